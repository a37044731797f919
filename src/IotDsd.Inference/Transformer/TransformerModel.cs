using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// A decoder-only transformer with a KV cache, run by ONNX Runtime. Graphs in the slot signature (what this project
/// builds and imports, <see cref="KvLayout.Slots"/>) keep every sequence in the model's <see cref="KvPool"/>, read in
/// place by <see cref="SlotEngine"/> passes that also take token trees and return only the logits rows asked for.
/// The exports users bring (<see cref="TransformerSignature"/>: Optimum's, with or without <c>position_ids</c>, merged
/// with <c>use_cache_branch</c>; onnxruntime-genai's GroupQueryAttention; int32 or int64 ids; float32, float16 or
/// bfloat16 caches and logits, the cache kept in the model's type and logits widened to float32 at the boundary) keep
/// a cache per sequence (<see cref="TransformerSequence"/>) and batched passes over a padded copy
/// (<see cref="TransformerBatch"/>).
/// </summary>
public sealed class TransformerModel : ITreeBatchModel, IVocabularyIdentity, IKvPoolModel
{
    private readonly TransformerBatch _batch;
    private readonly SlotEngine? _slots;
    private int _disposed;

    private TransformerModel(InferenceSession session, string name, TransformerSignature signature, int vocab, int maxPositions, InferenceOptions options)
    {
        Session = session;
        Options = options;
        Name = name;
        Signature = signature;
        VocabSize = vocab;
        MaxPositions = maxPositions;
        KvElementSize = NativeBuffer<byte>.ElementSize(signature.KvType);
        LogitsElementSize = NativeBuffer<byte>.ElementSize(signature.LogitsType);
        _batch = new TransformerBatch(this);
        if (signature.Layout == KvLayout.Slots) _slots = new SlotEngine(this);
    }

    public string Name { get; }

    /// <summary>Tokens the model proposes: the logits row, or the tokenizer's vocabulary when the row is padded past it.</summary>
    public int VocabSize { get; }

    /// <summary>Width of the graph's logits row (≥ <see cref="VocabSize"/>; the ids past the vocabulary are padding).</summary>
    public int LogitsWidth => Signature.LogitsWidth;
    public int Layers => Signature.Layers;

    /// <summary>Key/value heads per layer (fewer than query heads in grouped-query attention).</summary>
    public int KvHeads => Signature.KvHeads;
    public int HeadDim => Signature.HeadDim;

    /// <summary>How the graph's caches and positions work (see <see cref="Transformer.KvLayout"/>).</summary>
    public KvLayout Layout => Signature.Layout;

    /// <summary>Element type of the KV cache, kept as the model has it.</summary>
    public TensorElementType CacheType => Signature.KvType;

    /// <summary>KV cache bytes per token: layers × 2 × kv heads × head dim × 4 (the cache is fp32).</summary>
    public long CacheBytesPerToken => CacheShape.BytesPerToken(Layers, KvHeads, HeadDim, sizeof(float));

    /// <summary>KV pool of a slot-signature model (bytes allocated, slots held); zeros for the other layouts, whose sequences own their caches.</summary>
    public (long Bytes, int Slots, int InUse, int Capacity) KvPoolState
    {
        get
        {
            if (_slots is null) return (0, 0, 0, 0);
            lock (_slots.Gate) return (_slots.Pool.Bytes, _slots.Pool.Slots, _slots.Pool.InUse, _slots.Pool.Capacity);
        }
    }

    /// <summary>Bytes of the last slot pass's logits buffer (rows asked × width), for measurements; 0 for other layouts.</summary>
    internal long SlotLogitsBufferBytes => _slots?.LogitsBufferBytes ?? 0;

    /// <inheritdoc />
    public long? KvPoolPositions(int sequences, long longest)
    {
        if (_slots is null) return null;
        lock (_slots.Gate) return _slots.Pool.PositionsFor(sequences, longest);
    }

    /// <inheritdoc />
    public long KvPoolBytes => KvPoolState.Bytes;

    /// <summary>Where the KV caches live: "device" (a slot pool in GPU memory), "host" (a slot pool in host memory) or "per-session" (other layouts).</summary>
    public string KvPlace => _slots is null ? "per-session" : _slots.Pool.OnDevice ? "device" : "host";

    /// <summary>The KV pool's buffers come from the session's allocator (always off the CPU; on it only when asked).</summary>
    internal bool KvPoolFromAllocator => _slots?.Pool.FromAllocator ?? false;

    /// <summary>Slot passes run so far (0 for other layouts).</summary>
    internal long SlotPasses => _slots?.Passes ?? 0;

    /// <summary>Longest sequence the position embedding covers.</summary>
    public int MaxPositions { get; }

    /// <summary>Digest of the tokenizer's vocabulary (see <see cref="Models.VocabularyIdentity"/>); null when unknown.</summary>
    public string? VocabularyDigest { get; init; }

    internal InferenceSession Session { get; }

    /// <summary>How the session was made; the KV pool's own small graphs (<see cref="KvPoolOps"/>) run the same way.</summary>
    internal InferenceOptions Options { get; }
    internal RunOptions RunOptions { get; } = new();
    internal TransformerSignature Signature { get; }
    internal int KvElementSize { get; }
    internal int LogitsElementSize { get; }

    /// <summary>Bytes in one layer's key (or value) cache per slot: heads × head_dim × element size.</summary>
    internal int SlotBytes => KvHeads * HeadDim * KvElementSize;

    /// <summary>Loads an ONNX decoder (Optimum, onnxruntime-genai or this project's signature).</summary>
    /// <param name="maxPositions">Context length; 0 when unknown (then only ONNX Runtime checks positions).</param>
    public static TransformerModel Open(string path, string name, InferenceOptions? options = null, int maxPositions = 0) =>
        Open(path, name, options, maxPositions, null, 0);

    /// <summary>
    /// Loads an ONNX decoder, checks it against what its configuration says (<paramref name="expected"/>) and, when
    /// <paramref name="vocabulary"/> is positive and smaller than the logits row, proposes only those ids.
    /// </summary>
    public static TransformerModel Open(string path, string name, InferenceOptions? options, int maxPositions, DecoderExpectations? expected, int vocabulary, string? vocabularyDigest = null)
    {
        options ??= InferenceOptions.Default;
        IReadOnlySet<string> operators;
        IReadOnlySet<int> inputTypes;
        try
        {
            (operators, inputTypes) = Onnx.OnnxOperators.Summarize(path);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException(path, $"'{path}' is not a readable ONNX model: {e.Message}.", e);
        }

        InferenceSession session;
        try
        {
            using var sessionOptions = options.CreateSessionOptions();
            session = new InferenceSession(path, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(path, LoadFailure(path, e.Message, inputTypes), e);
        }

        TransformerModel? model = null;
        TransformerSignature? signature = null;
        try
        {
            signature = TransformerSignature.Inspect(path, session, operators, expected?.Names);
            if (expected is not null) Check(path, expected, signature);
            int vocab = vocabulary > 0 && vocabulary < signature.LogitsWidth ? vocabulary : signature.LogitsWidth;
            model = new TransformerModel(session, name, signature, vocab, maxPositions > 0 ? maxPositions : int.MaxValue, options)
            {
                VocabularyDigest = vocabularyDigest,
            };

            // One token through a fresh sequence: what only a run can refuse (an operator's limits, the shapes the
            // graph really produces against the bound outputs) is refused now, at load, not in the middle of a session.
            using (var probe = model.CreateSequence()) probe.Feed([0], new float[vocab]);
            return model;
        }
        catch (OnnxRuntimeException e)
        {
            if (model is not null) model.Dispose();
            else session.Dispose();
            var line = string.Join(' ', e.Message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            throw new ModelLoadException(path, $"'{path}' loads, but a first forward pass fails: {line} " +
                $"(read as {(signature is null ? "a decoder" : $"a {signature.Layout} decoder")}; re-export it in one of the signatures docs/models.md §2.2 lists).", e);
        }
        catch
        {
            if (model is not null) model.Dispose();
            else session.Dispose();
            throw;
        }
    }

    internal static ILanguageModel Load(string dir, ModelManifest manifest, InferenceOptions options)
    {
        var path = ModelDirectory.FilePath(dir, manifest);
        var name = string.IsNullOrEmpty(manifest.Name) ? $"transformer-{manifest.Role}" : manifest.Name;
        // The tokenizer says which ids are real: an export whose logits row is longer (padded to a multiple of 64 or 128)
        // proposes only the tokenizer's ids. Built models keep their declared, deliberately padded, vocabulary.
        // Both come from tokenizer.json itself: the ids it can produce (its vocabulary and added tokens, so special tokens
        // such as EOS stay proposable) and a digest of their text, the same whatever this build's tokenizer does with it.
        int vocabulary = 0;
        string? digest = null;
        if (manifest.Tokenizer == Tokenizers.TokenizerFactory.HuggingFace && manifest.Files.ContainsKey(ModelManifest.TokenizerFileKey))
        {
            var (size, d) = VocabularyIdentity.Read(ModelDirectory.FilePath(dir, manifest, ModelManifest.TokenizerFileKey), manifest.VocabSize);
            digest = d;
            if (manifest.Unverified) vocabulary = size;
        }
        var model = Open(path, name, options, manifest.Transformer?.MaxPositions ?? 0, manifest.Decoder, vocabulary, digest);
        if (model.LogitsWidth != manifest.VocabSize)
        {
            model.Dispose();
            var manifestPath = manifest.Decoder?.Source ?? Path.Combine(dir, ModelManifest.FileName);
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' says vocab_size {manifest.VocabSize}, but '{path}' has {model.LogitsWidth} logits.");
        }
        return model;
    }

    public IModelSequence CreateSequence()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return _slots is null ? new TransformerSequence(this) : new SlotSequence(this, _slots);
    }

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_slots is not null)
        {
            SlotBatch.Run(this, _slots, batch);
            return;
        }
        var live = 0;
        foreach (var r in batch)
        {
            Own(r.Sequence).Validate(r.Tokens.Span, r.Logits.Length);
            if (r.Tokens.Length > 0) live++;
        }

        // Exact-length pasts cannot be padded to a common length; GroupQueryAttention takes a batch only of single tokens.
        if (live <= 1 || Layout == KvLayout.Exact || (Layout == KvLayout.Seqlens && batch.Any(r => r.Tokens.Length > 1)))
        {
            foreach (var r in batch) ((TransformerSequence)r.Sequence).Feed(r.Tokens.Span, r.Logits.Span);
            return;
        }

        _batch.Run(batch);
    }

    /// <summary>
    /// A batch in which requests may be token trees: one pass with a tree attention bias for a slot-signature model;
    /// otherwise the chains batched and each tree fed path by path (the graph's 2-D mask cannot express a tree).
    /// </summary>
    public void FeedTreeBatch(IReadOnlyList<FeedRequest> batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_slots is not null)
        {
            SlotBatch.Run(this, _slots, batch);
            return;
        }
        var chains = batch.Where(r => !r.IsTree).ToList();
        if (chains.Count > 0) FeedBatch(chains);
        foreach (var r in batch)
        {
            if (r.IsTree) r.Sequence.FeedTree(r.Tokens.Span, r.Parents.Span, r.Logits.Span, r.Logits.Length / VocabSize);
        }
    }

    /// <summary>Checks a feed of <paramref name="tokens"/> after <paramref name="length"/> cached ones; returns its number of logits rows.</summary>
    internal int ValidateFeed(int length, ReadOnlySpan<int> tokens, int logitsLength)
    {
        ThrowIfDisposed();
        int v = VocabSize;
        if (logitsLength % v != 0) throw new ArgumentException($"Logits length {logitsLength} is not a whole number of {v}-wide rows.", "logits");
        int rows = logitsLength / v;
        if (rows > tokens.Length) throw new ArgumentException($"{rows} logits rows requested for {tokens.Length} tokens.", "logits");
        foreach (var t in tokens)
        {
            if ((uint)t >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"Tokens must be 0..{v - 1}.");
        }
        if ((long)length + tokens.Length > MaxPositions)
            throw new ArgumentException($"The sequence would hold {length + tokens.Length} tokens; model '{Name}' has a context of {MaxPositions}.", nameof(tokens));
        return rows;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _slots?.Dispose();
        _batch.Dispose();
        Session.Dispose();
        RunOptions.Dispose();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);

    /// <summary>Writes <paramref name="rows"/> logits rows of the graph's type and width as float32 rows of <see cref="VocabSize"/>.</summary>
    internal void CopyLogits(NativeBuffer<byte> logits, long firstRow, int rows, Span<float> destination)
    {
        int w = LogitsWidth, v = VocabSize;
        var source = logits.Slice(firstRow * w * LogitsElementSize, rows * w * LogitsElementSize);
        switch (Signature.LogitsType)
        {
            case TensorElementType.Float:
                {
                    var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(source);
                    if (w == v) f.CopyTo(destination);
                    else for (int r = 0; r < rows; r++) f.Slice(r * w, v).CopyTo(destination.Slice(r * v, v));
                    break;
                }
            case TensorElementType.Float16:
                {
                    var h = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(source);
                    for (int r = 0; r < rows; r++)
                    {
                        var row = h.Slice(r * w, v);
                        var to = destination.Slice(r * v, v);
                        for (int i = 0; i < v; i++) to[i] = (float)row[i];
                    }
                    break;
                }
            default: // bfloat16: the high half of a float32
                {
                    var b = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(source);
                    for (int r = 0; r < rows; r++)
                    {
                        var row = b.Slice(r * w, v);
                        var to = destination.Slice(r * v, v);
                        for (int i = 0; i < v; i++) to[i] = BitConverter.Int32BitsToSingle(row[i] << 16);
                    }
                    break;
                }
        }
    }

    private TransformerSequence Own(IModelSequence sequence)
    {
        if (sequence is not TransformerSequence s || !ReferenceEquals(s.Model, this))
            throw new ArgumentException($"The sequence was not created by model '{Name}'.", nameof(sequence));
        return s;
    }

    private static string LoadFailure(string path, string message, IReadOnlySet<int> inputTypes)
    {
        var line = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (!line.Contains("Could not find an implementation", StringComparison.Ordinal)) return $"ONNX Runtime could not load '{path}': {line}";
        const int BFloat16 = 16;
        var hint = inputTypes.Contains(BFloat16)
            ? "the model computes in bfloat16, which ONNX Runtime's CPU provider has no kernels for: convert it to float16 or float32 " +
              "(for example with onnxruntime's float16 converter), or run it with --provider cuda"
            : "this ONNX Runtime build has no kernel for one of its operators on this provider: export the model for the CPU " +
              "(float32 or float16; int8 or int4 MatMulNBits weights), or run it with --provider cuda";
        return $"'{path}' cannot run here: {hint} (ONNX Runtime: {line})";
    }

    private static void Check(string path, DecoderExpectations expected, TransformerSignature signature)
    {
        void Mismatch(string key, int said, string has) => throw new ModelLoadException(expected.Source,
            $"'{expected.Source}' says {key} {said.ToString(System.Globalization.CultureInfo.InvariantCulture)}, but '{path}' has {has}; " +
            "the configuration does not belong to this model (use the config from the same export).");
        if (expected.VocabSize is { } v && v != signature.LogitsWidth) Mismatch("vocab_size", v, $"{signature.LogitsWidth} logits");
        if (expected.Layers is { } l && l != signature.Layers) Mismatch("num_hidden_layers", l, $"{signature.Layers} layers of past keys/values");
        if (expected.KvHeads is { } h && h != signature.KvHeads) Mismatch("num_key_value_heads", h, $"{signature.KvHeads} key/value heads in '{signature.Past[0]}'");
        if (expected.HeadDim is { } d && d != signature.HeadDim) Mismatch("head_size", d, $"head_dim {signature.HeadDim} in '{signature.Past[0]}'");
    }
}

using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// A decoder-only transformer in the Hugging Face Optimum signature (see <see cref="TransformerGraph"/>), run by ONNX
/// Runtime with a KV cache per sequence (<see cref="TransformerSequence"/>) and batched forward passes over sequences
/// of different lengths (<see cref="TransformerBatch"/>). Works with models built by <see cref="TransformerModelBuilder"/>
/// and with exported ones that take <c>position_ids</c>.
/// </summary>
public sealed class TransformerModel : ILanguageModel
{
    private readonly TransformerBatch _batch;
    private int _disposed;

    private TransformerModel(InferenceSession session, string name, int vocab, int layers, int kvHeads, int headDim, int maxPositions)
    {
        Session = session;
        Name = name;
        VocabSize = vocab;
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        MaxPositions = maxPositions;
        InputNames = [TransformerGraph.InputIds, TransformerGraph.AttentionMask, TransformerGraph.PositionIds,
            .. Enumerable.Range(0, layers).SelectMany(l => (string[])[TransformerGraph.PastKey(l), TransformerGraph.PastValue(l)])];
        OutputNames = [TransformerGraph.Logits,
            .. Enumerable.Range(0, layers).SelectMany(l => (string[])[TransformerGraph.PresentKey(l), TransformerGraph.PresentValue(l)])];
        _batch = new TransformerBatch(this);
    }

    public string Name { get; }
    public int VocabSize { get; }
    public int Layers { get; }

    /// <summary>Key/value heads per layer (fewer than query heads in grouped-query attention).</summary>
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>KV cache bytes per token: layers × 2 × kv heads × head dim × 4 (the cache is fp32).</summary>
    public long CacheBytesPerToken => CacheShape.BytesPerToken(Layers, KvHeads, HeadDim, sizeof(float));

    /// <summary>Longest sequence the position embedding covers.</summary>
    public int MaxPositions { get; }

    internal InferenceSession Session { get; }
    internal RunOptions RunOptions { get; } = new();

    /// <summary>Inputs in binding order: ids, mask, positions, then past key and value per layer.</summary>
    internal string[] InputNames { get; }

    /// <summary>Outputs in binding order: logits, then present key and value per layer.</summary>
    internal string[] OutputNames { get; }

    /// <summary>Floats in one layer's key (or value) cache per slot: heads × head_dim.</summary>
    internal int SlotFloats => KvHeads * HeadDim;

    /// <summary>Loads an ONNX file in the Optimum decoder signature.</summary>
    /// <param name="maxPositions">Context length; 0 when unknown (then only ONNX Runtime checks positions).</param>
    public static TransformerModel Open(string path, string name, InferenceOptions? options = null, int maxPositions = 0)
    {
        options ??= InferenceOptions.Default;
        InferenceSession session;
        try
        {
            using var sessionOptions = options.CreateSessionOptions();
            session = new InferenceSession(path, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(path, $"ONNX Runtime could not load '{path}': {e.Message}", e);
        }

        try
        {
            var (vocab, layers, kvHeads, headDim) = Inspect(path, session);
            return new TransformerModel(session, name, vocab, layers, kvHeads, headDim, maxPositions > 0 ? maxPositions : int.MaxValue);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    internal static ILanguageModel Load(string dir, ModelManifest manifest, InferenceOptions options)
    {
        var path = ModelDirectory.FilePath(dir, manifest);
        var name = string.IsNullOrEmpty(manifest.Name) ? $"transformer-{manifest.Role}" : manifest.Name;
        var model = Open(path, name, options, manifest.Transformer?.MaxPositions ?? 0);
        if (model.VocabSize != manifest.VocabSize)
        {
            model.Dispose();
            var manifestPath = Path.Combine(dir, ModelManifest.FileName);
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' says vocab_size {manifest.VocabSize}, but '{path}' has {model.VocabSize} logits.");
        }
        return model;
    }

    public IModelSequence CreateSequence()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return new TransformerSequence(this);
    }

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var live = 0;
        foreach (var r in batch)
        {
            Own(r.Sequence).Validate(r.Tokens.Span, r.Logits.Length);
            if (r.Tokens.Length > 0) live++;
        }

        if (live <= 1)
        {
            foreach (var r in batch) ((TransformerSequence)r.Sequence).Feed(r.Tokens.Span, r.Logits.Span);
            return;
        }

        _batch.Run(batch);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _batch.Dispose();
        Session.Dispose();
        RunOptions.Dispose();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);

    private TransformerSequence Own(IModelSequence sequence)
    {
        if (sequence is not TransformerSequence s || !ReferenceEquals(s.Model, this))
            throw new ArgumentException($"The sequence was not created by model '{Name}'.", nameof(sequence));
        return s;
    }

    private static (int Vocab, int Layers, int KvHeads, int HeadDim) Inspect(string path, InferenceSession session)
    {
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        string Fail(string what) => throw new ModelLoadException(path, $"'{path}' is not a decoder in the Optimum " +
            $"text-generation-with-past signature: {what}. Export with `optimum-cli export onnx --task text-generation-with-past` " +
            "(inputs input_ids, attention_mask, position_ids, past_key_values.N.key/value; outputs logits, present.N.key/value).");

        foreach (var required in (string[])[TransformerGraph.InputIds, TransformerGraph.AttentionMask, TransformerGraph.PositionIds])
        {
            if (!inputs.TryGetValue(required, out var meta)) Fail($"it has no input '{required}'");
            else if (meta.ElementDataType != TensorElementType.Int64) Fail($"input '{required}' is {meta.ElementDataType}, not int64");
        }

        int layers = 0;
        while (inputs.ContainsKey(TransformerGraph.PastKey(layers))) layers++;
        if (layers == 0) Fail("it has no past_key_values.0.key input (export it with past)");
        var known = new HashSet<string>(StringComparer.Ordinal) { TransformerGraph.InputIds, TransformerGraph.AttentionMask, TransformerGraph.PositionIds };
        var kv = inputs[TransformerGraph.PastKey(0)];
        if (kv.Dimensions.Length != 4 || kv.Dimensions[1] <= 0 || kv.Dimensions[3] <= 0)
            Fail("past_key_values.0.key must be [batch, heads, past, head_dim] with fixed heads and head_dim");
        for (int l = 0; l < layers; l++)
        {
            foreach (var (input, output) in ((string, string)[])[(TransformerGraph.PastKey(l), TransformerGraph.PresentKey(l)), (TransformerGraph.PastValue(l), TransformerGraph.PresentValue(l))])
            {
                if (!inputs.TryGetValue(input, out var m)) Fail($"input '{input}' is missing");
                else if (m.ElementDataType != TensorElementType.Float) Fail($"'{input}' is {m.ElementDataType}; only float32 models are supported");
                else if (m.Dimensions.Length != 4 || m.Dimensions[1] != kv.Dimensions[1] || m.Dimensions[3] != kv.Dimensions[3]) Fail($"'{input}' has a different shape from past_key_values.0.key");
                if (!outputs.ContainsKey(output)) Fail($"output '{output}' is missing");
                known.Add(input);
            }
        }

        var extra = inputs.Keys.Where(k => !known.Contains(k)).ToList();
        if (extra.Count > 0) Fail($"it has inputs this runner does not feed: {string.Join(", ", extra)} (merged decoders with use_cache_branch are not supported; export without --no-post-process merging, or use model.onnx with past)");
        if (!outputs.TryGetValue(TransformerGraph.Logits, out var logits) || logits.ElementDataType != TensorElementType.Float)
            Fail("it has no float32 output 'logits'");
        else if (logits.Dimensions.Length != 3 || logits.Dimensions[2] <= 0)
            Fail("logits must be [batch, sequence, vocab] with a fixed vocab");
        return (outputs[TransformerGraph.Logits].Dimensions[2], layers, kv.Dimensions[1], kv.Dimensions[3]);
    }
}

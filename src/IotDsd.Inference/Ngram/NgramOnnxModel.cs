using System.Buffers;
using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using Microsoft.ML.OnnxRuntime;

namespace IotDsd.Inference.Ngram;

/// <summary>
/// A byte-level n-gram model compiled to ONNX (see <see cref="NgramOnnxCompiler"/>), run by ONNX Runtime on the CPU.
/// Sequences keep their token history; a feed builds one context row per requested logits row and runs once.
/// Thread-safe: sequences are independent, and concurrent runs share only the session.
/// </summary>
public sealed class NgramOnnxModel : ILanguageModel
{
    private static readonly string[] InputNames = [NgramOnnxCompiler.InputName];
    private static readonly string[] OutputNames = [NgramOnnxCompiler.OutputName];

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly int _width;
    private readonly int _vocab;
    private readonly int _live;
    private int _disposed;

    /// <summary>
    /// Loads <paramref name="modelPath"/> (an ONNX file from <see cref="NgramOnnxCompiler"/>). A
    /// <paramref name="vocabSize"/> above 256 pads each logits row with <see cref="PaddedLogit"/>.
    /// </summary>
    public NgramOnnxModel(string modelPath, int order, string name, InferenceOptions? options = null, int vocabSize = KneserNeyModel.VocabSize)
    {
        if (order < 2) throw new ArgumentOutOfRangeException(nameof(order), order, "Order must be at least 2.");
        Name = name;
        Order = order;
        _width = order - 1;
        using var sessionOptions = (options ?? InferenceOptions.Default).CreateSessionOptions();
        _session = new InferenceSession(modelPath, sessionOptions);
        // The graph's output width is the live vocabulary: 256 for a byte model, a tokenizer's size for a token model.
        _live = _session.OutputMetadata.TryGetValue(NgramOnnxCompiler.OutputName, out var output) && output.Dimensions is [_, > 1 and var width]
            ? width : KneserNeyModel.VocabSize;
        if (vocabSize < _live)
        {
            _session.Dispose();
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"The vocabulary must hold at least the model's {_live} tokens.");
        }

        _vocab = vocabSize;
    }

    /// <summary>Tokens the model predicts (the rest of <see cref="VocabSize"/> is padding).</summary>
    public int LiveTokens => _live;

    public string Name { get; }

    public int VocabSize => _vocab;

    /// <summary>A sequence keeps its token history, one int per token; the model itself holds no per-token state.</summary>
    public long CacheBytesPerToken => sizeof(int);

    /// <summary>Logit of the padded ids past the bytes: their probability underflows to exactly zero.</summary>
    public const float PaddedLogit = -1e4f;

    /// <summary>The largest padded vocabulary accepted (a real model's size, with room).</summary>
    public const int MaxVocabSize = 1 << 18;

    /// <summary>n: predictions condition on the last n-1 tokens.</summary>
    public int Order { get; }

    internal static ILanguageModel Load(string dir, ModelManifest manifest, InferenceOptions options)
    {
        var path = ModelDirectory.FilePath(dir, manifest);
        var manifestPath = Path.Combine(dir, ModelManifest.FileName);
        if (manifest.VocabSize is < 2 or > MaxVocabSize)
            throw new ModelLoadException(manifestPath, $"'{manifestPath}': an ngram model has vocab_size 256 (or a padded size, or a token vocabulary, up to {MaxVocabSize}), not {manifest.VocabSize}.");
        if (manifest.Order is not int order || order < 2)
            throw new ModelLoadException(manifestPath, $"'{manifestPath}': an ngram model needs \"order\" of at least 2.");
        try
        {
            var name = string.IsNullOrEmpty(manifest.Name) ? $"ngram-{order}-{manifest.Role}" : manifest.Name;
            return new NgramOnnxModel(path, order, name, options, manifest.VocabSize);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' says vocab_size {manifest.VocabSize}, fewer than the tokens '{path}' predicts: {e.Message}", e);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(path, $"ONNX Runtime could not load '{path}': {e.Message} " +
                "The file may be from an incompatible builder; rebuild the model directory.", e);
        }
    }

    public IModelSequence CreateSequence()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return new Sequence(this);
    }

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        int totalRows = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var r = batch[i];
            OwnSequence(r.Sequence);
            totalRows += Sequence.Validate(r.Tokens.Span, r.Logits.Length, _vocab, _live);
        }

        if (totalRows == 0)
        {
            foreach (var r in batch) ((Sequence)r.Sequence).Append(r.Tokens.Span);
            return;
        }

        var lengths = new int[batch.Count];
        long[] contexts = ArrayPool<long>.Shared.Rent(totalRows * _width);
        try
        {
            int row = 0;
            for (int i = 0; i < batch.Count; i++)
            {
                var r = batch[i];
                var seq = (Sequence)r.Sequence;
                lengths[i] = seq.Length;
                int rows = r.Logits.Length / VocabSize;
                seq.Append(r.Tokens.Span);
                seq.WriteContexts(rows, contexts.AsSpan(row * _width, rows * _width));
                row += rows;
            }

            IDisposableReadOnlyCollection<OrtValue> results;
            try
            {
                results = Run(contexts, totalRows);
            }
            catch
            {
                for (int i = batch.Count - 1; i >= 0; i--) ((Sequence)batch[i].Sequence).Truncate(lengths[i]);
                throw;
            }
            using (results)
            {
                var output = results[0].GetTensorDataAsSpan<float>();
                row = 0;
                for (int i = 0; i < batch.Count; i++)
                {
                    var dst = batch[i].Logits.Span;
                    int rows = dst.Length / VocabSize;
                    CopyRows(output.Slice(row * _live, rows * _live), dst);
                    row += rows;
                }
            }
        }
        finally
        {
            ArrayPool<long>.Shared.Return(contexts);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _session.Dispose();
        _runOptions.Dispose();
    }

    private Sequence OwnSequence(IModelSequence sequence)
    {
        if (sequence is not Sequence s || !ReferenceEquals(s.Owner, this))
            throw new ArgumentException($"The sequence was not created by model '{Name}'.", nameof(sequence));
        s.ThrowIfDisposed();
        return s;
    }

    /// <summary>Copies live-wide output rows into <see cref="VocabSize"/>-wide logits rows, padding the rest.</summary>
    private void CopyRows(ReadOnlySpan<float> output, Span<float> logits)
    {
        int v = _live;
        if (_vocab == v)
        {
            output[..logits.Length].CopyTo(logits);
            return;
        }

        for (int r = 0; r * _vocab < logits.Length; r++)
        {
            var dst = logits.Slice(r * _vocab, _vocab);
            output.Slice(r * v, v).CopyTo(dst);
            dst[v..].Fill(PaddedLogit);
        }
    }

    /// <summary>
    /// Runs <paramref name="rows"/> context rows. ONNX Runtime allocates the output itself (aligned), so each row's
    /// values do not depend on how many rows share the run: a managed buffer's alignment would change which elements
    /// take the vectorized path, and so their last bit.
    /// </summary>
    private IDisposableReadOnlyCollection<OrtValue> Run(long[] contexts, int rows)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            contexts.AsMemory(0, rows * _width), [rows, _width]);
        return _session.Run(_runOptions, InputNames, [input], OutputNames);
    }

    private sealed class Sequence(NgramOnnxModel owner) : IModelSequence
    {
        private int[] _tokens = new int[64];
        private bool _disposed;

        public NgramOnnxModel Owner { get; } = owner;

        public int Length { get; private set; }

        public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
        {
            ThrowIfDisposed();
            ObjectDisposedException.ThrowIf(Owner._disposed != 0, Owner);
            int rows = Validate(tokens, logits.Length, Owner._vocab, Owner._live);
            int width = Owner._width;
            int before = Length;
            Append(tokens);
            if (rows == 0) return;
            long[] contexts = ArrayPool<long>.Shared.Rent(rows * width);
            try
            {
                WriteContexts(rows, contexts.AsSpan(0, rows * width));
                IDisposableReadOnlyCollection<OrtValue> results;
                try
                {
                    results = Owner.Run(contexts, rows);
                }
                catch
                {
                    Truncate(before);
                    throw;
                }
                using (results) Owner.CopyRows(results[0].GetTensorDataAsSpan<float>(), logits);
            }
            finally
            {
                ArrayPool<long>.Shared.Return(contexts);
            }
        }

        public void Truncate(int length)
        {
            ThrowIfDisposed();
            if ((uint)length > (uint)Length)
                throw new ArgumentOutOfRangeException(nameof(length), length, $"Length must be 0..{Length}.");
            Length = length;
        }

        public void Dispose() => _disposed = true;

        public void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

        /// <summary>Checks tokens and logits; returns the number of logits rows.</summary>
        public static int Validate(ReadOnlySpan<int> tokens, int logitsLength, int v, int live)
        {
            if (logitsLength % v != 0)
                throw new ArgumentException($"Logits length {logitsLength} is not a whole number of {v}-wide rows.", "logits");
            int rows = logitsLength / v;
            if (rows > tokens.Length)
                throw new ArgumentException($"{rows} logits rows requested for {tokens.Length} tokens.", "logits");
            foreach (var t in tokens)
            {
                if ((uint)t >= (uint)live) throw new ArgumentOutOfRangeException(nameof(tokens), t, live == KneserNeyModel.VocabSize ? "Tokens must be bytes (0..255)." : $"Tokens must be 0..{live - 1}.");
            }
            return rows;
        }

        public void Append(ReadOnlySpan<int> tokens)
        {
            if (Length + tokens.Length > _tokens.Length)
                Array.Resize(ref _tokens, Math.Max(_tokens.Length * 2, Length + tokens.Length));
            tokens.CopyTo(_tokens.AsSpan(Length));
            Length += tokens.Length;
        }

        /// <summary>Context rows for the last <paramref name="rows"/> tokens: row r predicts the token after it.</summary>
        public void WriteContexts(int rows, Span<long> dst)
        {
            int width = Owner._width;
            for (int r = 0; r < rows; r++)
            {
                int last = Length - rows + r; // position of the token this row follows
                var row = dst.Slice(r * width, width);
                for (int c = 0; c < width; c++)
                {
                    int pos = last - (width - 1 - c);
                    row[c] = pos >= 0 ? _tokens[pos] : Owner._live;
                }
            }
        }
    }
}

using IotDsd.Core.Models;
using Microsoft.ML.OnnxRuntime;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// One forward pass over several sequences of different lengths. Row <c>b</c> of the batch holds its sequence's
/// past in slots <c>[0, length_b)</c> of a past padded to the longest, then its new tokens at the start of the
/// chunk; the attention mask hides the padding and <c>position_ids</c> carry each row's own positions, so every row
/// sees exactly what it would see alone. New keys and values are copied back into each sequence's cache.
/// </summary>
internal sealed class TransformerBatch(TransformerModel model) : IDisposable
{
    private readonly Lock _lock = new();
    private NativeBuffer<float>[] _past = [];
    private NativeBuffer<float>[] _present = [];
    private NativeBuffer<long>? _ids;
    private NativeBuffer<long>? _positions;
    private NativeBuffer<long>? _mask;
    private NativeBuffer<float>? _logits;

    public void Run(IReadOnlyList<FeedRequest> batch)
    {
        lock (_lock)
        {
            var live = new List<int>(batch.Count);
            int s = 0, p = 1;
            for (int i = 0; i < batch.Count; i++)
            {
                if (batch[i].Tokens.Length == 0) continue;
                live.Add(i);
                s = Math.Max(s, batch[i].Tokens.Length);
                p = Math.Max(p, batch[i].Sequence.Length);
            }

            int rows = live.Count, t = p + s, d = model.HeadDim, heads = model.KvHeads, v = model.VocabSize;
            Ensure(rows, p, s);
            var ids = _ids!.Span;
            var positions = _positions!.Span;
            var mask = _mask!.Span;
            for (int r = 0; r < rows; r++)
            {
                var request = batch[live[r]];
                var seq = (TransformerSequence)request.Sequence;
                var tokens = request.Tokens.Span;
                int length = seq.Length;
                for (int i = 0; i < s; i++)
                {
                    ids[r * s + i] = i < tokens.Length ? tokens[i] : 0;
                    positions[r * s + i] = length + Math.Min(i, tokens.Length - 1);
                }
                var row = mask.Slice(r * t, t);
                row[..length].Fill(1);
                row[length..p].Clear();
                row.Slice(p, tokens.Length).Fill(1);
                row[(p + tokens.Length)..].Clear();
                for (int i = 0; i < _past.Length; i++)
                {
                    var cache = seq.Past(i);
                    for (int h = 0; h < heads; h++)
                        cache.Slice((long)h * seq.Capacity * d, length * d).CopyTo(_past[i].Slice(((long)r * heads + h) * p * d, length * d));
                }
            }

            RunOnce(rows, p, s);

            for (int r = 0; r < rows; r++)
            {
                var request = batch[live[r]];
                var seq = (TransformerSequence)request.Sequence;
                int n = request.Tokens.Length, length = seq.Length;
                seq.EnsureCapacity(length + n);
                for (int i = 0; i < _present.Length; i++)
                {
                    var cache = seq.Past(i);
                    for (int h = 0; h < heads; h++)
                        _present[i].Slice((((long)r * heads + h) * t + p) * d, n * d).CopyTo(cache.Slice(((long)h * seq.Capacity + length) * d, n * d));
                }
                int wanted = request.Logits.Length / v;
                _logits!.Slice(((long)r * s + n - wanted) * v, wanted * v).CopyTo(request.Logits.Span);
                seq.Advance(n);
            }
        }
    }

    private void RunOnce(int rows, int p, int s)
    {
        var values = new List<OrtValue>(3 + 4 * model.Layers);
        using var io = model.Session.CreateIoBinding();
        try
        {
            OrtValue Add(OrtValue value)
            {
                values.Add(value);
                return value;
            }

            var names = model.InputNames;
            io.BindInput(names[0], Add(_ids!.Tensor([rows, s])));
            io.BindInput(names[1], Add(_mask!.Tensor([rows, p + s])));
            io.BindInput(names[2], Add(_positions!.Tensor([rows, s])));
            for (int i = 0; i < _past.Length; i++) io.BindInput(names[3 + i], Add(_past[i].Tensor([rows, model.KvHeads, p, model.HeadDim])));
            var outputs = model.OutputNames;
            io.BindOutput(outputs[0], Add(_logits!.Tensor([rows, s, model.VocabSize])));
            for (int i = 0; i < _present.Length; i++) io.BindOutput(outputs[1 + i], Add(_present[i].Tensor([rows, model.KvHeads, p + s, model.HeadDim])));
            model.Session.RunWithBinding(model.RunOptions, io);
        }
        finally
        {
            foreach (var value in values) value.Dispose();
        }
    }

    /// <summary>Grows the workspace (never shrinks) to fit <paramref name="rows"/> rows, a past of <paramref name="p"/> and chunks of <paramref name="s"/>.</summary>
    private void Ensure(int rows, int p, int s)
    {
        long slot = model.SlotFloats;
        Grow(ref _past, rows * slot * p);
        Grow(ref _present, rows * slot * (p + s));
        Grow(ref _ids, (long)rows * s);
        Grow(ref _positions, (long)rows * s);
        Grow(ref _mask, (long)rows * (p + s));
        Grow(ref _logits, (long)rows * s * model.VocabSize);
    }

    private void Grow(ref NativeBuffer<float>[] buffers, long length)
    {
        if (buffers.Length > 0 && buffers[0].Length >= length) return;
        foreach (var b in buffers) b.Dispose();
        buffers = new NativeBuffer<float>[2 * model.Layers];
        for (int i = 0; i < buffers.Length; i++) buffers[i] = new NativeBuffer<float>(length);
    }

    private static void Grow<T>(ref NativeBuffer<T>? buffer, long length)
        where T : unmanaged
    {
        if (buffer is not null && buffer.Length >= length) return;
        buffer?.Dispose();
        buffer = new NativeBuffer<T>(length);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var b in _past) b.Dispose();
            foreach (var b in _present) b.Dispose();
            _ids?.Dispose();
            _positions?.Dispose();
            _mask?.Dispose();
            _logits?.Dispose();
        }
    }
}

using IotDsd.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>One sequence's share of a slot pass: its tokens (a chain, or a tree when <see cref="Parents"/> is not empty) and how many logits rows it wants (its last tokens').</summary>
internal readonly record struct SlotItem(SlotSequence Sequence, ReadOnlyMemory<int> Tokens, ReadOnlyMemory<int> Parents, int Rows);

/// <summary>
/// Forward passes of a slot-signature model (<see cref="KvLayout.Slots"/>) over any set of its sequences: the batch is
/// the run of pool slots from the lowest to the highest sequence in it (slots in between that are not in the pass are
/// idle rows: one masked token each, nothing kept), the past is the pool itself, bound in place, and the graph returns
/// the new keys/values (copied into each slot at its length) and only the logits rows asked for.
/// </summary>
/// <remarks>
/// The engine writes the attention bias itself: row b, query i may see past position j when j &lt; length_b, and new
/// token k when k is i or an ancestor of i (a chain: k ≤ i). Positions are length_b + depth − 1. So chains, ragged
/// lengths and token trees are one code path. Bindings are cached per pass shape; a steady decode allocates nothing.
/// </remarks>
internal sealed class SlotEngine(TransformerModel model) : IDisposable
{
    private const float Closed = -1e9f;
    private const int MaxCachedBindings = 128;

    private readonly Dictionary<(int First, int Rows, int Chunk, int Logits), Binding> _bindings = [];
    private NativeBuffer<long>? _ids, _positions, _indices;
    private NativeBuffer<float>? _bias;
    private NativeBuffer<byte>? _logits;
    private NativeBuffer<byte>[] _fresh = [];
    private int _generation = -1;
    private int[] _depth = new int[64];
    private int[] _firstRow = new int[8];

    public Lock Gate { get; } = new();
    public KvPool Pool { get; } = new(model);

    /// <summary>Bytes of the pass buffers' logits (rows asked × width × element size), for measurements.</summary>
    public long LogitsBufferBytes => _logits?.Length ?? 0;

    /// <summary>Passes so far (for measurements and tests).</summary>
    public long Passes { get; private set; }

    /// <summary>
    /// One pass over <paramref name="items"/> (each with a slot; the caller holds <see cref="Gate"/>). Afterwards item
    /// k's logits rows are readable with <see cref="CopyLogits"/> and each sequence's length has grown by its tokens.
    /// </summary>
    public void Run(ReadOnlySpan<SlotItem> items)
    {
        int first = int.MaxValue, last = -1, s = 1, reserve = 0, wanted = 0;
        if (_firstRow.Length < items.Length) _firstRow = new int[Math.Max(items.Length, 2 * _firstRow.Length)];
        for (int k = 0; k < items.Length; k++)
        {
            var item = items[k];
            _firstRow[k] = wanted;
            if (item.Tokens.Length == 0) continue;
            int slot = item.Sequence.Slot;
            first = Math.Min(first, slot);
            last = Math.Max(last, slot);
            s = Math.Max(s, item.Tokens.Length);
            reserve = Math.Max(reserve, item.Sequence.Length + item.Tokens.Length);
            wanted += item.Rows;
        }
        if (last < 0) return;
        Pool.Reserve(reserve);
        int rows = last - first + 1, c = Pool.Capacity, total = c + s, logitsRows = Math.Max(wanted, 1);
        Ensure(rows, s, total, logitsRows);

        var ids = _ids!.Span[..(rows * s)];
        var positions = _positions!.Span[..(rows * s)];
        var bias = _bias!.Span[..(rows * s * total)];
        var indices = _indices!.Span;
        ids.Clear();
        positions.Clear();
        // Idle rows: every query sees only itself (finite, discarded); live rows are written below.
        bias.Fill(Closed);
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < s; i++) bias[((r * s) + i) * total + c + i] = 0;
        }
        if (wanted == 0) indices[0] = 0;

        for (int k = 0; k < items.Length; k++)
        {
            var item = items[k];
            int n = item.Tokens.Length;
            if (n == 0) continue;
            int r = item.Sequence.Slot - first, length = item.Sequence.Length;
            var tokens = item.Tokens.Span;
            var parents = item.Parents.Span;
            if (_depth.Length < n) _depth = new int[Math.Max(n, 2 * _depth.Length)];
            for (int i = 0; i < s; i++)
            {
                int at = r * s + i;
                var row = bias.Slice(at * total, total);
                if (i >= n)
                {
                    // Padding after a short chunk: a position the model has, sees only itself; its key/value are dropped.
                    positions[at] = length + n - 1;
                    continue;
                }
                ids[at] = tokens[i];
                int depth = parents.IsEmpty ? i + 1 : parents[i] < 0 ? 1 : _depth[parents[i]] + 1;
                _depth[i] = depth;
                positions[at] = length + depth - 1;
                row[..length].Clear();
                if (parents.IsEmpty) row.Slice(c, i + 1).Clear();
                else for (int j = i; j >= 0; j = parents[j]) row[c + j] = 0;
            }
            for (int j = 0; j < item.Rows; j++) indices[_firstRow[k] + j] = r * s + n - item.Rows + j;
        }

        var binding = Bind(first, rows, s, logitsRows);
        model.Session.RunWithBinding(model.RunOptions, binding.Io);
        Passes++;

        long headBytes = (long)model.HeadDim * model.KvElementSize;
        for (int k = 0; k < items.Length; k++)
        {
            var item = items[k];
            int n = item.Tokens.Length;
            if (n == 0) continue;
            var seq = item.Sequence;
            int r = seq.Slot - first;
            for (int i = 0; i < _fresh.Length; i++)
            {
                for (int h = 0; h < model.KvHeads; h++)
                    _fresh[i].Slice(((long)r * model.KvHeads + h) * s * headBytes, checked((int)(n * headBytes))).CopyTo(Pool.Span(i, seq.Slot, h, seq.Length, n));
            }
            seq.Advance(n);
        }
    }

    /// <summary>Writes the logits rows of item <paramref name="item"/> of the last <see cref="Run"/> into <paramref name="destination"/>.</summary>
    public void CopyLogits(int item, int rows, Span<float> destination)
    {
        if (rows > 0) model.CopyLogits(_logits!, _firstRow[item], rows, destination);
    }

    private void Ensure(int rows, int s, int total, int logitsRows)
    {
        bool changed = Pool.Generation != _generation;
        changed |= Grow(ref _ids, (long)rows * s);
        changed |= Grow(ref _positions, (long)rows * s);
        changed |= Grow(ref _bias, (long)rows * s * total);
        changed |= Grow(ref _indices, logitsRows);
        changed |= Grow(ref _logits, (long)logitsRows * model.LogitsWidth * model.LogitsElementSize);
        long fresh = (long)rows * model.KvHeads * s * model.HeadDim * model.KvElementSize;
        if (_fresh.Length == 0 || _fresh[0].Length < fresh)
        {
            foreach (var b in _fresh) b.Dispose();
            _fresh = ForwardBuffers.Allocate(model.Layers, Math.Max(fresh, _fresh.Length == 0 ? 0 : 2 * _fresh[0].Length), false);
            changed = true;
        }
        if (changed || _bindings.Count > MaxCachedBindings) ClearBindings();
        _generation = Pool.Generation;
    }

    private static bool Grow<T>(ref NativeBuffer<T>? buffer, long length)
        where T : unmanaged
    {
        if (buffer is not null && buffer.Length >= length) return false;
        long size = Math.Max(length, buffer is null ? 0 : 2 * buffer.Length);
        buffer?.Dispose();
        buffer = new NativeBuffer<T>(size);
        return true;
    }

    private Binding Bind(int first, int rows, int s, int logitsRows)
    {
        if (_bindings.TryGetValue((first, rows, s, logitsRows), out var cached)) return cached;
        var sig = model.Signature;
        int c = Pool.Capacity;
        var values = new List<OrtValue>(5 + 4 * model.Layers);
        var io = model.Session.CreateIoBinding();
        try
        {
            OrtValue Add(OrtValue v)
            {
                values.Add(v);
                return v;
            }

            io.BindInput(sig.InputIds, Add(_ids!.Tensor([rows, s])));
            io.BindInput(sig.PositionIds!, Add(_positions!.Tensor([rows, s])));
            io.BindInput(sig.AttentionBias!, Add(_bias!.Tensor([rows, 1, s, c + s])));
            io.BindInput(sig.LogitsIndices!, Add(_indices!.Tensor([logitsRows])));
            for (int i = 0; i < sig.Past.Length; i++) io.BindInput(sig.Past[i], Add(Pool.View(i, first, rows)));
            io.BindOutput(sig.Logits, Add(_logits!.Tensor([logitsRows, model.LogitsWidth], sig.LogitsType)));
            for (int i = 0; i < sig.Present.Length; i++)
                io.BindOutput(sig.Present[i], Add(_fresh[i].Tensor([rows, model.KvHeads, s, model.HeadDim], sig.KvType)));
            var binding = new Binding(io, values);
            _bindings[(first, rows, s, logitsRows)] = binding;
            return binding;
        }
        catch
        {
            io.Dispose();
            foreach (var v in values) v.Dispose();
            throw;
        }
    }

    private void ClearBindings()
    {
        foreach (var b in _bindings.Values) b.Dispose();
        _bindings.Clear();
    }

    public void Dispose()
    {
        lock (Gate)
        {
            ClearBindings();
            Pool.Dispose();
            foreach (var b in _fresh) b.Dispose();
            _fresh = [];
            _ids?.Dispose();
            _positions?.Dispose();
            _indices?.Dispose();
            _bias?.Dispose();
            _logits?.Dispose();
        }
    }
}

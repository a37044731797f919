using IotDsd.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>One sequence's share of a slot pass: its tokens (a chain, or a tree when <see cref="Parents"/> is not empty) and how many logits rows it wants (its last tokens').</summary>
internal readonly record struct SlotItem(SlotSequence Sequence, ReadOnlyMemory<int> Tokens, ReadOnlyMemory<int> Parents, int Rows);

/// <summary>
/// Forward passes of a slot-signature model (<see cref="KvLayout.Slots"/>) over any set of its sequences: the batch is
/// the run of pool slots from the lowest to the highest sequence in it (slots in between that are not in the pass are
/// idle rows: one masked token each, nothing kept), the past is the pool itself, bound in place, the graph writes the
/// new keys/values into each slot at its length (<c>kv_write_from</c>/<c>kv_write_to</c>, with <c>present</c> bound to
/// the pool), and only the logits rows asked for come back. Wherever the pool lives (host or GPU), what crosses to it
/// per pass is the ids, positions, bias and indices, and what comes back is the logits rows.
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

    private readonly Dictionary<(int First, int Rows, int Chunk, int Logits, int Writes), PassBinding> _bindings = [];
    private readonly bool _writesInGraph = model.Signature.KvWriteFrom is not null;
    private NativeBuffer<long>? _ids, _positions, _indices, _writeFrom, _writeTo;
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
        int first = int.MaxValue, last = -1, s = 1, reserve = 0, wanted = 0, writes = 0;
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
            writes += item.Tokens.Length * model.KvHeads;
        }
        if (last < 0) return;
        Pool.Reserve(reserve);
        int rows = last - first + 1, c = Pool.Capacity, total = c + s, logitsRows = Math.Max(wanted, 1);
        Ensure(rows, s, total, logitsRows, writes);

        var ids = _ids!.Span[..(rows * s)];
        var positions = _positions!.Span[..(rows * s)];
        var bias = _bias!.Span[..(rows * s * total)];
        var indices = _indices!.Span;
        var from = _writeFrom!.Span;
        var to = _writeTo!.Span;
        int w = 0;
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
            // Token i's key/value row (row r, head h of the new [rows, kv_heads, s, head_dim]) goes to position length + i.
            for (int h = 0; h < model.KvHeads; h++)
            {
                for (int i = 0; i < n; i++, w++)
                {
                    from[w] = ((long)r * model.KvHeads + h) * s + i;
                    to[3 * w] = r;
                    to[3 * w + 1] = h;
                    to[3 * w + 2] = length + i;
                }
            }
        }

        var binding = Bind(first, rows, s, logitsRows, writes);
        model.Session.RunWithBinding(model.RunOptions, binding.Io);
        if (binding.Write is { } write) Pool.Ops.RunWrite(write);
        Passes++;
        for (int k = 0; k < items.Length; k++)
        {
            if (items[k].Tokens.Length > 0) items[k].Sequence.Advance(items[k].Tokens.Length);
        }
    }

    /// <summary>Writes the logits rows of item <paramref name="item"/> of the last <see cref="Run"/> into <paramref name="destination"/>.</summary>
    public void CopyLogits(int item, int rows, Span<float> destination)
    {
        if (rows > 0) model.CopyLogits(_logits!, _firstRow[item], rows, destination);
    }

    private void Ensure(int rows, int s, int total, int logitsRows, int writes)
    {
        bool changed = Pool.Generation != _generation;
        changed |= Grow(ref _ids, (long)rows * s);
        changed |= Grow(ref _positions, (long)rows * s);
        changed |= Grow(ref _bias, (long)rows * s * total);
        changed |= Grow(ref _indices, logitsRows);
        changed |= Grow(ref _writeFrom, writes);
        changed |= Grow(ref _writeTo, 3L * writes);
        changed |= Grow(ref _logits, (long)logitsRows * model.LogitsWidth * model.LogitsElementSize);
        long fresh = (long)rows * model.KvHeads * s * model.HeadDim * model.KvElementSize;
        if (!_writesInGraph && (_fresh.Length == 0 || _fresh[0].Length < fresh))
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

    private PassBinding Bind(int first, int rows, int s, int logitsRows, int writes)
    {
        if (_bindings.TryGetValue((first, rows, s, logitsRows, writes), out var cached)) return cached;
        var sig = model.Signature;
        int c = Pool.Capacity;
        var binding = new PassBinding(model.Session.CreateIoBinding());
        try
        {
            var io = binding.Io;
            io.BindInput(sig.InputIds, binding.Add(_ids!.Tensor([rows, s])));
            io.BindInput(sig.PositionIds!, binding.Add(_positions!.Tensor([rows, s])));
            io.BindInput(sig.AttentionBias!, binding.Add(_bias!.Tensor([rows, 1, s, c + s])));
            io.BindInput(sig.LogitsIndices!, binding.Add(_indices!.Tensor([logitsRows])));
            var from = binding.Add(_writeFrom!.Tensor([writes]));
            var to = binding.Add(_writeTo!.Tensor([writes, 3]));
            if (_writesInGraph)
            {
                io.BindInput(sig.KvWriteFrom!, from);
                io.BindInput(sig.KvWriteTo!, to);
            }
            io.BindOutput(sig.Logits, binding.Add(_logits!.Tensor([logitsRows, model.LogitsWidth], sig.LogitsType)));
            var pasts = new OrtValue[sig.Past.Length];
            var fresh = new OrtValue[_writesInGraph ? 0 : sig.Past.Length];
            for (int i = 0; i < sig.Past.Length; i++)
            {
                // The past view is also where present goes: the graph writes the new rows into the pool in place.
                var past = pasts[i] = binding.Add(Pool.View(i, first, rows));
                io.BindInput(sig.Past[i], past);
                io.BindOutput(sig.Present[i], _writesInGraph ? past : fresh[i] = binding.Add(_fresh[i].Tensor([rows, model.KvHeads, s, model.HeadDim], sig.KvType)));
            }
            // A graph that returns the new rows instead: the pool's write graph puts them in after the pass.
            if (!_writesInGraph) binding.Write = Pool.Ops.BindWrite(pasts, fresh, from, to);
            _bindings[(first, rows, s, logitsRows, writes)] = binding;
            return binding;
        }
        catch
        {
            binding.Dispose();
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
            _writeFrom?.Dispose();
            _writeTo?.Dispose();
            _bias?.Dispose();
            _logits?.Dispose();
        }
    }
}

/// <summary>A pass's cached IO binding, the values bound in it, and for a graph without in-graph writes the binding of
/// the pool's write graph that puts the new rows in after the pass.</summary>
internal sealed class PassBinding(OrtIoBinding io) : IDisposable
{
    private readonly List<OrtValue> _values = [];

    public OrtIoBinding Io { get; } = io;
    public OrtIoBinding? Write { get; set; }

    public OrtValue Add(OrtValue value)
    {
        _values.Add(value);
        return value;
    }

    public void Dispose()
    {
        Write?.Dispose();
        Io.Dispose();
        foreach (var v in _values) v.Dispose();
    }
}

using System.Numerics;
using IotDsd.Core.Models;
using Microsoft.ML.OnnxRuntime;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// One generation's KV cache for a <see cref="TransformerModel"/>, in native memory that ONNX Runtime reads and
/// writes through an IO binding.
/// </summary>
/// <remarks>
/// The past is bound with a fixed number of slots (<see cref="Capacity"/>, a power of two) rather than the exact
/// length: slots at and after <see cref="Length"/> are masked out by <c>attention_mask</c>, and <c>position_ids</c>
/// carry the true positions. So tensor shapes change only when the capacity grows, the binding for each chunk size
/// is made once and reused, and a decode step allocates nothing managed. After a run the new keys and values
/// (the last chunk-size slots of <c>present</c>) are copied into the past at <see cref="Length"/>. Rolling back is
/// setting <see cref="Length"/>: the slots after it are masked, never recomputed.
/// </remarks>
internal sealed class TransformerSequence : IModelSequence
{
    /// <summary>Chunk sizes below this keep their binding between calls (decode steps, verification rounds).</summary>
    private const int CachedChunkSizes = 33;
    private const int MinCapacity = 32;

    private readonly Binding?[] _bindings = new Binding?[CachedChunkSizes];
    private readonly ForwardBuffers _buffers;
    private NativeBuffer<byte>[] _exact = [];
    private int _chunkCapacity;
    private bool _disposed;

    public TransformerSequence(TransformerModel model)
    {
        Model = model;
        _buffers = new ForwardBuffers(model);
    }

    public TransformerModel Model { get; }

    public int Length { get; private set; }

    /// <summary>KV slots allocated.</summary>
    public int Capacity { get; private set; }

    /// <summary>
    /// Most tokens one pass takes when only the last rows' logits are wanted: a longer prompt runs in passes of this
    /// many tokens, the earlier ones asking for no logits, so the pass buffers (logits: chunk × vocabulary) stay one
    /// chunk's size however long the prompt.
    /// </summary>
    internal const int PrefillChunk = 256;

    /// <summary>Bytes of the pass buffers' logits (chunk × vocabulary × element size), for measurements.</summary>
    internal long LogitsBufferBytes => _buffers.Logits?.Length ?? 0;

    public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        int rows = Validate(tokens, logits.Length);
        if (tokens.Length == 0) return;
        EnsureCapacity(Length + tokens.Length);
        while (tokens.Length > PrefillChunk && tokens.Length - PrefillChunk >= rows)
        {
            FeedPass(tokens[..PrefillChunk], [], 0);
            tokens = tokens[PrefillChunk..];
        }
        FeedPass(tokens, logits, rows);
    }

    private void FeedPass(ReadOnlySpan<int> tokens, Span<float> logits, int rows)
    {
        int s = tokens.Length;
        EnsureCapacity(Length + s);
        EnsureChunk(s);
        if (Model.Layout == KvLayout.Exact)
        {
            FeedExact(tokens, logits, rows);
            return;
        }
        int c = Capacity;

        var ids = _buffers.Ids!.Span;
        var positions = _buffers.Positions!.Span;
        for (int i = 0; i < s; i++)
        {
            ids[i] = tokens[i];
            positions[i] = Length + i;
        }
        var mask = _buffers.Mask!.Slice(0, c + s);
        mask[..Length].Fill(1);
        mask[Length..c].Clear();
        mask[c..].Fill(1);
        _buffers.Narrow(s, c + s);

        var binding = s < CachedChunkSizes ? _bindings[s] ??= _buffers.Bind(1, c, s) : _buffers.Bind(1, c, s);
        try
        {
            Model.Session.RunWithBinding(Model.RunOptions, binding.Io);
        }
        finally
        {
            if (s >= CachedChunkSizes) binding.Dispose();
        }

        // Concat: present = past slots, then the new ones; Seqlens: the new ones right after the valid past.
        CopyNew(_buffers.Present, c + s, Model.Layout == KvLayout.Seqlens ? Length : c, s);
        Model.CopyLogits(_buffers.Logits!, s - rows, rows, logits);
        Length += s;
    }

    /// <summary>A pass with the past bound at exactly <see cref="Length"/> slots (graphs that count positions from its shape).</summary>
    private void FeedExact(ReadOnlySpan<int> tokens, Span<float> logits, int rows)
    {
        int s = tokens.Length, n = Length;
        int head = Model.HeadDim * Model.KvElementSize;
        long needed = (long)Model.SlotBytes * Math.Max(n, 1);
        bool stacked = Model.Signature.Stacked;
        if (_exact.Length == 0 || _exact[0].Length < (stacked ? 2 * needed : needed))
        {
            foreach (var b in _exact) b.Dispose();
            _exact = ForwardBuffers.Allocate(Model.Layers, Math.Max(needed, 2 * (long)Model.SlotBytes * n), stacked);
        }
        var past = _buffers.Past;
        long storeHalf = (long)Model.SlotBytes * Capacity, exactHalf = (long)Model.SlotBytes * n;
        for (int i = 0; i < past.Length; i++)
        {
            for (int h = 0; h < Model.KvHeads; h++)
                ForwardBuffers.Slice(past, i, storeHalf, stacked, (long)h * Capacity * head, n * head)
                    .CopyTo(ForwardBuffers.Slice(_exact, i, exactHalf, stacked, (long)h * n * head, n * head));
        }

        var ids = _buffers.Ids!.Span;
        var positions = _buffers.Positions!.Span;
        for (int i = 0; i < s; i++)
        {
            ids[i] = tokens[i];
            positions[i] = n + i;
        }
        _buffers.Mask!.Slice(0, n + s).Fill(1);
        _buffers.Narrow(s, n + s);
        using (var binding = _buffers.Bind(1, n, s, _exact)) Model.Session.RunWithBinding(Model.RunOptions, binding.Io);

        CopyNew(_buffers.Present, n + s, n, s);
        Model.CopyLogits(_buffers.Logits!, s - rows, rows, logits);
        Length += s;
    }

    /// <summary>Copies <paramref name="count"/> new slots per head from <paramref name="present"/> (<paramref name="stride"/> slots per head, starting at <paramref name="from"/>) into the cache at <see cref="Length"/>.</summary>
    private void CopyNew(NativeBuffer<byte>[] present, int stride, int from, int count)
    {
        int head = Model.HeadDim * Model.KvElementSize;
        bool stacked = Model.Signature.Stacked;
        var past = _buffers.Past;
        long presentHalf = (long)Model.SlotBytes * stride, pastHalf = (long)Model.SlotBytes * Capacity;
        for (int i = 0; i < past.Length; i++)
        {
            for (int h = 0; h < Model.KvHeads; h++)
                ForwardBuffers.Slice(present, i, presentHalf, stacked, ((long)h * stride + from) * head, count * head)
                    .CopyTo(ForwardBuffers.Slice(past, i, pastHalf, stacked, ((long)h * Capacity + Length) * head, count * head));
        }
    }

    public void Truncate(int length)
    {
        ThrowIfDisposed();
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), length, $"Length must be 0..{Length}.");
        Length = length;
    }

    /// <summary>Checks a feed; returns its number of logits rows.</summary>
    public int Validate(ReadOnlySpan<int> tokens, int logitsLength)
    {
        ThrowIfDisposed();
        return Model.ValidateFeed(Length, tokens, logitsLength);
    }

    /// <summary>Counts <paramref name="count"/> slots written by a batched run as part of the sequence.</summary>
    internal void Advance(int count) => Length += count;

    /// <summary>Bytes of key or value cache <paramref name="index"/> (2·layer, 2·layer+1), laid out [heads, Capacity, head_dim] in the model's element type.</summary>
    internal Span<byte> Past(int index, long offset, int length) =>
        ForwardBuffers.Slice(_buffers.Past, index, (long)Model.SlotBytes * Capacity, Model.Signature.Stacked, offset, length);

    /// <summary>Makes room for <paramref name="needed"/> slots, keeping the first <see cref="Length"/>.</summary>
    internal void EnsureCapacity(int needed)
    {
        ThrowIfDisposed();
        if (needed <= Capacity) return;
        int capacity = (int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)Math.Max(needed, MinCapacity)), int.MaxValue);
        int d = Model.HeadDim * Model.KvElementSize;
        bool stacked = Model.Signature.Stacked;
        var old = _buffers.Past;
        var fresh = ForwardBuffers.Allocate(Model.Layers, (long)Model.SlotBytes * capacity, stacked);
        long oldHalf = (long)Model.SlotBytes * Capacity, freshHalf = (long)Model.SlotBytes * capacity;
        for (int i = 0; i < fresh.Length && old.Length > 0; i++)
        {
            for (int h = 0; h < Model.KvHeads; h++)
                ForwardBuffers.Slice(old, i, oldHalf, stacked, (long)h * Capacity * d, Length * d)
                    .CopyTo(ForwardBuffers.Slice(fresh, i, freshHalf, stacked, (long)h * capacity * d, Length * d));
        }
        DisposeBindings();
        foreach (var b in old) b.Dispose();
        _buffers.Past = fresh;
        Capacity = capacity;
        if (_chunkCapacity > 0) _buffers.EnsureChunk(1, Capacity, _chunkCapacity);
    }

    private void EnsureChunk(int s)
    {
        if (s <= _chunkCapacity) return;
        _chunkCapacity = Math.Max(s, Math.Min(2 * _chunkCapacity, CachedChunkSizes - 1));
        if (_buffers.EnsureChunk(1, Capacity, _chunkCapacity)) DisposeBindings();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeBindings();
        _buffers.Dispose();
        foreach (var b in _exact) b.Dispose();
        _exact = [];
    }

    private void DisposeBindings()
    {
        for (int i = 0; i < _bindings.Length; i++)
        {
            _bindings[i]?.Dispose();
            _bindings[i] = null;
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}

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

    public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        int rows = Validate(tokens, logits.Length);
        int s = tokens.Length;
        if (s == 0) return;
        EnsureCapacity(Length + s);
        EnsureChunk(s);
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

        var binding = s < CachedChunkSizes ? _bindings[s] ??= _buffers.Bind(1, c, s) : _buffers.Bind(1, c, s);
        try
        {
            Model.Session.RunWithBinding(Model.RunOptions, binding.Io);
        }
        finally
        {
            if (s >= CachedChunkSizes) binding.Dispose();
        }

        int d = Model.HeadDim;
        var past = _buffers.Past;
        var present = _buffers.Present;
        for (int i = 0; i < past.Length; i++)
        {
            for (int h = 0; h < Model.KvHeads; h++)
            {
                present[i].Slice(((long)h * (c + s) + c) * d, s * d).CopyTo(past[i].Slice(((long)h * c + Length) * d, s * d));
            }
        }
        int v = Model.VocabSize;
        _buffers.Logits!.Slice((long)(s - rows) * v, rows * v).CopyTo(logits);
        Length += s;
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
        Model.ThrowIfDisposed();
        int v = Model.VocabSize;
        if (logitsLength % v != 0) throw new ArgumentException($"Logits length {logitsLength} is not a whole number of {v}-wide rows.", "logits");
        int rows = logitsLength / v;
        if (rows > tokens.Length) throw new ArgumentException($"{rows} logits rows requested for {tokens.Length} tokens.", "logits");
        foreach (var t in tokens)
        {
            if ((uint)t >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"Tokens must be 0..{v - 1}.");
        }
        if ((long)Length + tokens.Length > Model.MaxPositions)
            throw new ArgumentException($"The sequence would hold {Length + tokens.Length} tokens; model '{Model.Name}' has a context of {Model.MaxPositions}.", nameof(tokens));
        return rows;
    }

    /// <summary>Counts <paramref name="count"/> slots written by a batched run as part of the sequence.</summary>
    internal void Advance(int count) => Length += count;

    /// <summary>Key or value cache <paramref name="index"/> (2·layer, 2·layer+1) as [heads, Capacity, head_dim].</summary>
    internal NativeBuffer<float> Past(int index) => _buffers.Past[index];

    /// <summary>Makes room for <paramref name="needed"/> slots, keeping the first <see cref="Length"/>.</summary>
    internal void EnsureCapacity(int needed)
    {
        ThrowIfDisposed();
        if (needed <= Capacity) return;
        int capacity = (int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)Math.Max(needed, MinCapacity)), int.MaxValue);
        int d = Model.HeadDim;
        var old = _buffers.Past;
        var fresh = new NativeBuffer<float>[2 * Model.Layers];
        for (int i = 0; i < fresh.Length; i++)
        {
            fresh[i] = new NativeBuffer<float>((long)Model.SlotFloats * capacity);
            if (old.Length == 0) continue;
            for (int h = 0; h < Model.KvHeads; h++)
                old[i].Slice((long)h * Capacity * d, Length * d).CopyTo(fresh[i].Slice((long)h * capacity * d, Length * d));
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

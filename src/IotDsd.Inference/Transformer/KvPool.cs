using System.Numerics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// A model's KV storage for the slot signature (<see cref="KvLayout.Slots"/>): one buffer per layer for keys and one
/// for values, each laid out [slots, kv_heads, capacity, head_dim], in native memory. Each sequence owns one slot; a
/// pass binds a view over a contiguous run of slots straight into the graph (no copy of anyone's past), and only the
/// new tokens' keys and values are written back, at each sequence's length.
/// </summary>
/// <remarks>
/// Both dimensions grow by doubling, copying the pool once: <see cref="Capacity"/> (positions per slot, from 32 up to
/// the model's context) when a sequence needs more, and the slot count when every slot is taken. A pass attends over
/// the whole capacity (positions past a row's length are masked by the bias), so the capacity follows the longest
/// live sequence. Not thread-safe: <see cref="SlotEngine"/> serializes every use under its lock.
/// </remarks>
internal sealed unsafe class KvPool(TransformerModel model) : IDisposable
{
    private const int MinCapacity = 32;
    private NativeBuffer<byte>[] _cache = [];
    private bool[] _used = [];
    private int _inUse;

    /// <summary>Slots allocated.</summary>
    public int Slots => _used.Length;

    /// <summary>Slots held by live sequences.</summary>
    public int InUse => _inUse;

    /// <summary>Positions per slot.</summary>
    public int Capacity { get; private set; }

    /// <summary>Changes whenever the storage moves (views and bindings over it are then stale).</summary>
    public int Generation { get; private set; }

    /// <summary>Bytes allocated: slots × capacity × the model's bytes per token.</summary>
    public long Bytes => (long)Slots * Capacity * model.SlotBytes * 2 * model.Layers;

    private long HeadBytes => (long)model.HeadDim * model.KvElementSize;
    private long SlotStride => model.KvHeads * Capacity * HeadBytes;

    /// <summary>Takes the lowest free slot (growing the pool when all are taken).</summary>
    public int Acquire()
    {
        for (int i = 0; i < _used.Length; i++)
        {
            if (_used[i]) continue;
            _used[i] = true;
            _inUse++;
            return i;
        }
        int slot = _used.Length;
        Reallocate(Math.Max(4, 2 * _used.Length), Math.Max(Capacity, MinCapacity));
        _used[slot] = true;
        _inUse++;
        return slot;
    }

    public void Release(int slot)
    {
        if ((uint)slot >= (uint)_used.Length || !_used[slot]) return;
        _used[slot] = false;
        _inUse--;
    }

    /// <summary>Makes every slot hold at least <paramref name="positions"/> positions.</summary>
    public void Reserve(int positions)
    {
        if (positions <= Capacity) return;
        int capacity = (int)Math.Min(BitOperations.RoundUpToPowerOf2((uint)Math.Max(positions, MinCapacity)), int.MaxValue);
        Reallocate(Math.Max(_used.Length, 4), capacity);
    }

    /// <summary>
    /// Bytes of cache <paramref name="index"/> (2·layer key, 2·layer+1 value) for <paramref name="count"/> positions
    /// from <paramref name="position"/> of one head of one slot.
    /// </summary>
    public Span<byte> Span(int index, int slot, int head, int position, int count) =>
        _cache[index].Slice(slot * SlotStride + (head * (long)Capacity + position) * HeadBytes, checked((int)(count * HeadBytes)));

    /// <summary>Moves <paramref name="count"/> positions of one slot from <paramref name="from"/> to <paramref name="to"/> (every layer and head).</summary>
    public void Move(int slot, int from, int to, int count)
    {
        if (from == to || count == 0) return;
        for (int i = 0; i < _cache.Length; i++)
        {
            for (int h = 0; h < model.KvHeads; h++) Span(i, slot, h, from, count).CopyTo(Span(i, slot, h, to, count));
        }
    }

    /// <summary>A tensor [rows, kv_heads, capacity, head_dim] over slots <paramref name="first"/>.. of cache <paramref name="index"/>.</summary>
    public OrtValue View(int index, int first, int rows)
    {
        var buffer = _cache[index];
        long bytes = rows * SlotStride;
        if ((first + rows) * SlotStride > buffer.Length) throw new ArgumentOutOfRangeException(nameof(rows));
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float,
            [rows, model.KvHeads, Capacity, model.HeadDim], (IntPtr)(buffer.Pointer + first * SlotStride), bytes);
    }

    private void Reallocate(int slots, int capacity)
    {
        var fresh = new NativeBuffer<byte>[2 * model.Layers];
        long freshStride = model.KvHeads * capacity * HeadBytes;
        try
        {
            for (int i = 0; i < fresh.Length; i++) fresh[i] = new NativeBuffer<byte>(slots * freshStride);
        }
        catch
        {
            foreach (var b in fresh) b?.Dispose();
            throw;
        }
        if (_cache.Length > 0)
        {
            int bytes = checked((int)(Capacity * HeadBytes));
            for (int i = 0; i < fresh.Length; i++)
            {
                for (int s = 0; s < _used.Length; s++)
                {
                    if (!_used[s]) continue;
                    for (int h = 0; h < model.KvHeads; h++)
                        _cache[i].Slice(s * SlotStride + h * Capacity * HeadBytes, bytes).CopyTo(fresh[i].Slice(s * freshStride + h * capacity * HeadBytes, bytes));
                }
            }
        }
        foreach (var b in _cache) b.Dispose();
        _cache = fresh;
        if (slots != _used.Length) Array.Resize(ref _used, slots);
        Capacity = capacity;
        Generation++;
    }

    public void Dispose()
    {
        foreach (var b in _cache) b.Dispose();
        _cache = [];
    }
}

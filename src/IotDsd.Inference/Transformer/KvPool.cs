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
    private SlotSequence?[] _owners = [];
    private int _inUse;

    /// <summary>Slots allocated.</summary>
    public int Slots => _owners.Length;

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

    /// <summary>Takes the lowest free slot for <paramref name="owner"/> (growing the pool when all are taken).</summary>
    public int Acquire(SlotSequence owner)
    {
        for (int i = 0; i < _owners.Length; i++)
        {
            if (_owners[i] is not null) continue;
            _owners[i] = owner;
            _inUse++;
            return i;
        }
        int slot = _owners.Length;
        Reallocate(Math.Max(4, 2 * _owners.Length), Math.Max(Capacity, MinCapacity));
        _owners[slot] = owner;
        _inUse++;
        return slot;
    }

    public void Release(int slot)
    {
        if ((uint)slot >= (uint)_owners.Length || _owners[slot] is null) return;
        _owners[slot] = null;
        _inUse--;
    }

    /// <summary>
    /// Makes every slot hold at least <paramref name="positions"/> positions. The capacity follows the longest live
    /// sequence: it grows to the next step (64 positions, or an eighth of the size past 512) and shrinks once it is
    /// more than twice what any live sequence and <paramref name="positions"/> need, since a pass attends over all of it.
    /// </summary>
    public void Reserve(int positions)
    {
        int needed = positions;
        foreach (var owner in _owners) needed = Math.Max(needed, owner?.Length ?? 0);
        int fit = Fit(needed);
        if (fit > Capacity || fit <= Capacity / 2) Reallocate(Math.Max(_owners.Length, 4), fit);
    }

    /// <summary>The capacity for <paramref name="positions"/>: rounded up to 64, or to an eighth of the power of two below it.</summary>
    internal static int Fit(int positions)
    {
        positions = Math.Max(positions, MinCapacity);
        int step = Math.Max(64, (int)(BitOperations.RoundUpToPowerOf2((uint)positions + 1) / 16));
        return (int)Math.Min((long)(positions + step - 1) / step * step, int.MaxValue);
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
            int bytes = checked((int)(Math.Min(Capacity, capacity) * HeadBytes));
            for (int i = 0; i < fresh.Length; i++)
            {
                for (int s = 0; s < _owners.Length && s < slots; s++)
                {
                    if (_owners[s] is null) continue;
                    for (int h = 0; h < model.KvHeads; h++)
                        _cache[i].Slice(s * SlotStride + h * Capacity * HeadBytes, bytes).CopyTo(fresh[i].Slice(s * freshStride + h * capacity * HeadBytes, bytes));
                }
            }
        }
        foreach (var b in _cache) b.Dispose();
        _cache = fresh;
        if (slots != _owners.Length) Array.Resize(ref _owners, slots);
        Capacity = capacity;
        Generation++;
    }

    public void Dispose()
    {
        foreach (var b in _cache) b.Dispose();
        _cache = [];
    }
}

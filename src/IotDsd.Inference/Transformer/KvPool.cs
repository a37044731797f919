using System.Numerics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// A model's KV storage for the slot signature (<see cref="KvLayout.Slots"/>): one buffer per layer for keys and one
/// for values, each laid out [slots, kv_heads, capacity, head_dim], where the model's provider wants its past: host
/// memory on the CPU, device memory on a GPU (from the session's allocator). Each sequence owns one slot; a pass binds a
/// view over a contiguous run of slots straight into the graph (no copy of anyone's past), and the graph writes the new
/// tokens' keys and values in place (<see cref="SlotGraph"/>). Nothing here reads or writes the pool's bytes from the
/// host: growth, zeroing and moves run as small graphs on the same provider (<see cref="KvPoolOps"/>).
/// </summary>
/// <remarks>
/// Both dimensions grow by doubling, copying the pool once: <see cref="Capacity"/> (positions per slot, from 32 up to
/// the model's context) when a sequence needs more, and the slot count (1, 2, 4, …) when every slot is taken. A pass attends over
/// the whole capacity (positions past a row's length are masked by the bias), so the capacity follows the longest
/// live sequence. Not thread-safe: <see cref="SlotEngine"/> serializes every use under its lock.
/// </remarks>
internal sealed class KvPool : IDisposable
{
    private const int MinCapacity = 32;
    private readonly TransformerModel model;
    private readonly IDisposable? _memoryInfos;
    private readonly OrtAllocator? _allocator;
    private readonly bool _ownsAllocator;
    private Block[] _cache = [];
    private SlotSequence?[] _owners = [];
    private int _inUse;
    private long[] _moves = [];

    public KvPool(TransformerModel model)
    {
        this.model = model;
        Ops = new KvPoolOps(model);
        Memory = OrtMemoryInfo.DefaultInstance;
        var session = model.Session;
        var infos = session.GetMemoryInfosForInputs();
        int past = session.InputNames.ToList().IndexOf(model.Signature.Past[0]);
        var info = past >= 0 && past < infos.Count ? infos[past] : null;
        if (info is not null && (info.GetDeviceType() != OrtMemoryInfoDeviceType.CPU || model.Options.KvThroughAllocator))
        {
            _memoryInfos = infos;
            Memory = info;
            try
            {
                _allocator = new OrtAllocator(session, info);
                _ownsAllocator = true;
            }
            catch (OnnxRuntimeException)
            {
                // A provider loaded through the plugin API registers its device allocators with the environment.
                _allocator = OrtEnv.Instance().GetSharedAllocator(info);
            }
        }
        else infos.Dispose();
    }

    /// <summary>Where the pool lives (the model's past inputs' memory).</summary>
    public OrtMemoryInfo Memory { get; }

    /// <summary>True when the pool is in memory the host cannot read (a GPU's).</summary>
    public bool OnDevice => Memory.GetDeviceType() != OrtMemoryInfoDeviceType.CPU;

    /// <summary>True when the buffers come from the session's allocator (always off the CPU; on it only when asked).</summary>
    public bool FromAllocator => _allocator is not null;

    internal KvPoolOps Ops { get; }

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
        Reallocate(SlotsFor(slot + 1), Math.Max(Capacity, MinCapacity));
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

    /// <summary>
    /// Positions (slots × capacity) the pool would hold with <paramref name="sequences"/> live sequences, the longest
    /// <paramref name="longest"/> positions long: the slots grow by doubling and never shrink, and the capacity follows
    /// <see cref="Reserve"/>'s rule from where it is now.
    /// </summary>
    public long PositionsFor(int sequences, long longest)
    {
        int fit = Fit((int)Math.Clamp(longest, 0, int.MaxValue));
        int capacity = fit > Capacity || fit <= Capacity / 2 ? fit : Capacity;
        return (long)SlotsFor(sequences) * capacity;
    }

    /// <summary>The slots the pool holds once <paramref name="sequences"/> have one: 1, 2, 4, … (never fewer than now).</summary>
    private int SlotsFor(int sequences)
    {
        int slots = Math.Max(1, _owners.Length);
        while (slots < sequences) slots *= 2;
        return slots;
    }

    /// <summary>The capacity for <paramref name="positions"/>: rounded up to 64, or to an eighth of the power of two below it.</summary>
    internal static int Fit(int positions)
    {
        positions = Math.Max(positions, MinCapacity);
        int step = Math.Max(64, (int)(BitOperations.RoundUpToPowerOf2((uint)positions + 1) / 16));
        return (int)Math.Min((long)(positions + step - 1) / step * step, int.MaxValue);
    }

    /// <summary>
    /// Moves the keys and values at positions <paramref name="start"/> + <paramref name="nodes"/>[i] of one slot to
    /// <paramref name="start"/> + i, every layer and head, in one run where the pool lives (all read before any is written).
    /// </summary>
    public void Move(int slot, int start, ReadOnlySpan<int> nodes)
    {
        int moves = 0;
        for (int i = 0; i < nodes.Length; i++) moves += nodes[i] != i ? 1 : 0;
        if (moves == 0) return;
        int n = moves * model.KvHeads;
        if (_moves.Length < 6 * n) _moves = new long[Math.Max(6 * n, 2 * _moves.Length)];
        int k = 0;
        for (int i = 0; i < nodes.Length; i++)
        {
            if (nodes[i] == i) continue;
            for (int h = 0; h < model.KvHeads; h++, k++)
            {
                _moves[3 * k] = slot;
                _moves[3 * k + 1] = h;
                _moves[3 * k + 2] = start + nodes[i];
                _moves[3 * (n + k)] = slot;
                _moves[3 * (n + k) + 1] = h;
                _moves[3 * (n + k) + 2] = start + i;
            }
        }
        using var from = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _moves.AsMemory(0, 3 * n), [n, 3]);
        using var to = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _moves.AsMemory(3 * n, 3 * n), [n, 3]);
        var views = new OrtValue[_cache.Length];
        try
        {
            for (int i = 0; i < views.Length; i++) views[i] = View(i, 0, Slots);
            Ops.Move(views, from, to);
        }
        finally
        {
            foreach (var v in views) v?.Dispose();
        }
    }

    /// <summary>A tensor [rows, kv_heads, capacity, head_dim] over slots <paramref name="first"/>.. of cache <paramref name="index"/>.</summary>
    public OrtValue View(int index, int first, int rows) => View(_cache[index], first, rows, Capacity);

    private OrtValue View(Block block, int first, int rows, int capacity)
    {
        long stride = model.KvHeads * capacity * HeadBytes, bytes = rows * stride;
        if ((first + rows) * stride > block.Bytes) throw new ArgumentOutOfRangeException(nameof(rows));
        return OrtValue.CreateTensorValueWithData(Memory, TensorElementType.Float,
            [rows, model.KvHeads, capacity, model.HeadDim], block.Pointer + (nint)(first * stride), bytes);
    }

    private void Reallocate(int slots, int capacity)
    {
        var fresh = new Block[2 * model.Layers];
        long bytes = slots * model.KvHeads * capacity * HeadBytes;
        try
        {
            for (int i = 0; i < fresh.Length; i++)
            {
                fresh[i] = Allocate(bytes);
                using var to = View(fresh[i], 0, slots, capacity);
                long[] shape = [slots, model.KvHeads, capacity, model.HeadDim];
                if (_cache.Length == 0) Ops.Zero(to, shape);
                else
                {
                    using var from = View(_cache[i], 0, Slots, Capacity);
                    Ops.Resize(from, [Slots, model.KvHeads, Capacity, model.HeadDim], to, shape);
                }
            }
        }
        catch
        {
            foreach (var b in fresh) b?.Dispose();
            throw;
        }
        foreach (var b in _cache) b.Dispose();
        _cache = fresh;
        if (slots != _owners.Length) Array.Resize(ref _owners, slots);
        Capacity = capacity;
        Generation++;
    }

    private Block Allocate(long bytes)
    {
        if (_allocator is null)
        {
            var buffer = new NativeBuffer<byte>(bytes);
            unsafe { return new Block((nint)buffer.Pointer, bytes, buffer); }
        }
        if (bytes > uint.MaxValue)
            throw new InvalidOperationException($"Model '{model.Name}': one layer's KV pool would need {bytes >> 20} MiB, more than the 4 GiB " +
                "one device allocation may hold; lower the verifier's KV budget (--kv-budget-mb) or its sessions' max tokens.");
        var allocation = _allocator.Allocate((uint)bytes);
        return new Block(allocation.DangerousGetHandle(), bytes, allocation);
    }

    public void Dispose()
    {
        foreach (var b in _cache) b.Dispose();
        _cache = [];
        Ops.Dispose();
        if (_ownsAllocator) _allocator?.Dispose();
        _memoryInfos?.Dispose();
    }

    /// <summary>One buffer of the pool: its address, size, and what frees it.</summary>
    private sealed record Block(nint Pointer, long Bytes, IDisposable Owner) : IDisposable
    {
        public void Dispose() => Owner.Dispose();
    }
}

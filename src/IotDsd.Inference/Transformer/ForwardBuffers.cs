using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// The native tensors of one forward pass of a <see cref="TransformerModel"/> — ids, mask, positions, past and
/// present keys/values per layer, logits — and their IO binding. Grow-only: a smaller pass reuses larger buffers.
/// Keys, values and logits are raw bytes in the graph's own element type; ids, mask and positions are written as
/// int64 and narrowed in place when the graph takes int32.
/// </summary>
internal sealed class ForwardBuffers(TransformerModel model) : IDisposable
{
    private NativeBuffer<byte>? _useCache;

    /// <summary>
    /// Past key/value per layer (2·layer, 2·layer+1), laid out [rows, heads, slots, head_dim]; for a stacked cache
    /// (<c>past_%d</c>, [2, rows, heads, slots, head_dim]) both entries of a layer are one buffer, the value half after
    /// the key half (see <see cref="Slice"/>).
    /// </summary>
    public NativeBuffer<byte>[] Past { get; set; } = [];
    public NativeBuffer<byte>[] Present { get; private set; } = [];
    public NativeBuffer<long>? Ids { get; private set; }
    public NativeBuffer<long>? Positions { get; private set; }
    public NativeBuffer<long>? Mask { get; private set; }
    public NativeBuffer<byte>? Logits { get; private set; }

    /// <summary>True when anything was reallocated (bindings over the old buffers are then stale).</summary>
    public bool EnsurePast(int rows, int slots) => Grow(Past, rows * (long)model.SlotBytes * Math.Max(slots, 1), b => Past = b);

    /// <summary>Makes room for <paramref name="rows"/> chunks of <paramref name="chunk"/> tokens over <paramref name="slots"/> past slots.</summary>
    public bool EnsureChunk(int rows, int slots, int chunk)
    {
        long total = slots + (long)chunk;
        bool changed = Grow(Present, rows * model.SlotBytes * total, b => Present = b);
        changed |= Grow(Ids, (long)rows * chunk, b => Ids = b);
        changed |= Grow(Positions, (long)rows * chunk, b => Positions = b);
        changed |= Grow(Mask, rows * total, b => Mask = b);
        changed |= Grow(Logits, (long)rows * chunk * model.LogitsWidth * model.LogitsElementSize, b => Logits = b);
        return changed;
    }

    /// <summary>
    /// Bytes of cache <paramref name="index"/> (2·layer key, 2·layer+1 value) at <paramref name="offset"/> within it;
    /// <paramref name="half"/> is the size of one key (or value) region, where a stacked cache keeps the value.
    /// </summary>
    public static Span<byte> Slice(NativeBuffer<byte>[] set, int index, long half, bool stacked, long offset, int length) =>
        set[index].Slice((stacked ? (index & 1) * half : 0) + offset, length);

    /// <summary>Caches for <paramref name="layers"/> layers of <paramref name="length"/> bytes each (a stacked layer: one buffer of twice that).</summary>
    public static NativeBuffer<byte>[] Allocate(int layers, long length, bool stacked)
    {
        var fresh = new NativeBuffer<byte>[2 * layers];
        for (int l = 0; l < layers; l++)
        {
            if (stacked) fresh[2 * l] = fresh[2 * l + 1] = new NativeBuffer<byte>(2 * length);
            else (fresh[2 * l], fresh[2 * l + 1]) = (new NativeBuffer<byte>(length), new NativeBuffer<byte>(length));
        }
        return fresh;
    }

    /// <summary>Narrows the first <paramref name="count"/> ids, mask entries and positions to int32 where the graph takes int32.</summary>
    public void Narrow(int ids, int mask)
    {
        var s = model.Signature;
        if (s.IdsType == TensorElementType.Int32) Narrow(Ids!, ids);
        if (s.MaskType == TensorElementType.Int32) Narrow(Mask!, mask);
        if (s.PositionIds is not null && s.PositionsType == TensorElementType.Int32) Narrow(Positions!, ids);
    }

    /// <summary>
    /// Binds the buffers as a pass of <paramref name="rows"/> × <paramref name="chunk"/> tokens over <paramref name="slots"/>
    /// past slots, with <paramref name="past"/> (default: <see cref="Past"/>) as the past keys/values.
    /// </summary>
    public Binding Bind(int rows, int slots, int chunk, NativeBuffer<byte>[]? past = null)
    {
        past ??= Past;
        var s = model.Signature;
        var values = new List<OrtValue>(4 + 4 * model.Layers);
        var io = model.Session.CreateIoBinding();
        try
        {
            OrtValue Add(OrtValue v)
            {
                values.Add(v);
                return v;
            }

            long total = slots + (long)chunk;
            io.BindInput(s.InputIds, Add(Ids!.Tensor([rows, chunk], s.IdsType)));
            io.BindInput(s.AttentionMask, Add(Mask!.Tensor([rows, total], s.MaskType)));
            if (s.PositionIds is not null) io.BindInput(s.PositionIds, Add(Positions!.Tensor([rows, chunk], s.PositionsType)));
            if (s.UseCacheBranch is not null)
            {
                _useCache ??= new NativeBuffer<byte>(1);
                _useCache.Span[0] = 1;
                io.BindInput(s.UseCacheBranch, Add(_useCache.Tensor([1], TensorElementType.Bool)));
            }
            if (s.Stacked)
            {
                for (int i = 0; i < past.Length; i += 2) io.BindInput(s.Past[i], Add(past[i].Tensor([2, rows, model.KvHeads, slots, model.HeadDim], s.KvType)));
            }
            else
            {
                for (int i = 0; i < past.Length; i++) io.BindInput(s.Past[i], Add(past[i].Tensor([rows, model.KvHeads, slots, model.HeadDim], s.KvType)));
            }
            io.BindOutput(s.Logits, Add(Logits!.Tensor([rows, chunk, model.LogitsWidth], s.LogitsType)));
            if (s.Stacked)
            {
                for (int i = 0; i < Present.Length; i += 2) io.BindOutput(s.Present[i], Add(Present[i].Tensor([2, rows, model.KvHeads, total, model.HeadDim], s.KvType)));
            }
            else
            {
                for (int i = 0; i < Present.Length; i++) io.BindOutput(s.Present[i], Add(Present[i].Tensor([rows, model.KvHeads, total, model.HeadDim], s.KvType)));
            }
            return new Binding(io, values);
        }
        catch
        {
            io.Dispose();
            foreach (var v in values) v.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var b in Past) b.Dispose();
        foreach (var b in Present) b.Dispose();
        Ids?.Dispose();
        Positions?.Dispose();
        Mask?.Dispose();
        Logits?.Dispose();
        _useCache?.Dispose();
        Past = [];
        Present = [];
    }

    /// <summary>Rewrites int64 values as int32 at the start of the same memory (safe front to back: 4i + 4 ≤ 8(i + 1)).</summary>
    private static void Narrow(NativeBuffer<long> buffer, int count)
    {
        var wide = buffer.Span;
        var narrow = System.Runtime.InteropServices.MemoryMarshal.Cast<long, int>(wide);
        for (int i = 0; i < count; i++) narrow[i] = checked((int)wide[i]);
    }

    private bool Grow(NativeBuffer<byte>[] buffers, long length, Action<NativeBuffer<byte>[]> set)
    {
        bool stacked = model.Signature.Stacked;
        if (buffers.Length > 0 && buffers[0].Length >= (stacked ? 2 * length : length)) return false;
        foreach (var b in buffers) b.Dispose();
        set(Allocate(model.Layers, length, stacked));
        return true;
    }

    private static bool Grow<T>(NativeBuffer<T>? buffer, long length, Action<NativeBuffer<T>> set)
        where T : unmanaged
    {
        if (buffer is not null && buffer.Length >= length) return false;
        buffer?.Dispose();
        set(new NativeBuffer<T>(length));
        return true;
    }
}

/// <summary>An IO binding and the tensors it binds; disposing it leaves the buffers alone.</summary>
internal sealed class Binding(OrtIoBinding io, List<OrtValue> values) : IDisposable
{
    public OrtIoBinding Io { get; } = io;

    public void Dispose()
    {
        Io.Dispose();
        foreach (var v in values) v.Dispose();
    }
}

using Microsoft.ML.OnnxRuntime;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// The native tensors of one forward pass of a <see cref="TransformerModel"/> — ids, mask, positions, past and
/// present keys/values per layer, logits — and their IO binding. Grow-only: a smaller pass reuses larger buffers.
/// </summary>
internal sealed class ForwardBuffers(TransformerModel model) : IDisposable
{
    /// <summary>Past key/value per layer (2·layer, 2·layer+1), laid out [rows, heads, slots, head_dim].</summary>
    public NativeBuffer<float>[] Past { get; set; } = [];
    public NativeBuffer<float>[] Present { get; private set; } = [];
    public NativeBuffer<long>? Ids { get; private set; }
    public NativeBuffer<long>? Positions { get; private set; }
    public NativeBuffer<long>? Mask { get; private set; }
    public NativeBuffer<float>? Logits { get; private set; }

    /// <summary>True when anything was reallocated (bindings over the old buffers are then stale).</summary>
    public bool EnsurePast(int rows, int slots) => Grow(Past, rows * (long)model.SlotFloats * slots, b => Past = b);

    /// <summary>Makes room for <paramref name="rows"/> chunks of <paramref name="chunk"/> tokens over <paramref name="slots"/> past slots.</summary>
    public bool EnsureChunk(int rows, int slots, int chunk)
    {
        long total = slots + (long)chunk;
        bool changed = Grow(Present, rows * model.SlotFloats * total, b => Present = b);
        changed |= Grow(Ids, (long)rows * chunk, b => Ids = b);
        changed |= Grow(Positions, (long)rows * chunk, b => Positions = b);
        changed |= Grow(Mask, rows * total, b => Mask = b);
        changed |= Grow(Logits, (long)rows * chunk * model.VocabSize, b => Logits = b);
        return changed;
    }

    /// <summary>Binds the buffers as a pass of <paramref name="rows"/> × <paramref name="chunk"/> tokens over <paramref name="slots"/> past slots.</summary>
    public Binding Bind(int rows, int slots, int chunk)
    {
        var values = new List<OrtValue>(3 + 4 * model.Layers);
        var io = model.Session.CreateIoBinding();
        try
        {
            OrtValue Add(OrtValue v)
            {
                values.Add(v);
                return v;
            }

            long total = slots + (long)chunk;
            var inputs = model.InputNames;
            io.BindInput(inputs[0], Add(Ids!.Tensor([rows, chunk])));
            io.BindInput(inputs[1], Add(Mask!.Tensor([rows, total])));
            io.BindInput(inputs[2], Add(Positions!.Tensor([rows, chunk])));
            for (int i = 0; i < Past.Length; i++) io.BindInput(inputs[3 + i], Add(Past[i].Tensor([rows, model.KvHeads, slots, model.HeadDim])));
            var outputs = model.OutputNames;
            io.BindOutput(outputs[0], Add(Logits!.Tensor([rows, chunk, model.VocabSize])));
            for (int i = 0; i < Present.Length; i++) io.BindOutput(outputs[1 + i], Add(Present[i].Tensor([rows, model.KvHeads, total, model.HeadDim])));
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
        Past = [];
        Present = [];
    }

    private bool Grow(NativeBuffer<float>[] buffers, long length, Action<NativeBuffer<float>[]> set)
    {
        if (buffers.Length > 0 && buffers[0].Length >= length) return false;
        foreach (var b in buffers) b.Dispose();
        var fresh = new NativeBuffer<float>[2 * model.Layers];
        for (int i = 0; i < fresh.Length; i++) fresh[i] = new NativeBuffer<float>(length);
        set(fresh);
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

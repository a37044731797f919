using IotDsd.Inference.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// The few changes a <see cref="KvPool"/> needs besides a pass's own writes, done where the pool lives: small ONNX graphs
/// run on the model's execution provider, so a pool in GPU memory is zeroed, resized, compacted and written without a
/// byte crossing to the host, and the CPU runs exactly the same code.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><see cref="Zero"/>: <c>ConstantOfShape</c> into a fresh buffer (device memory is not zeroed, and a masked
/// position is still multiplied by zero, which a NaN left in it would survive).</item>
/// <item><see cref="Resize"/>: <c>Pad(Slice(old))</c>: the overlap copied, the rest zero.</item>
/// <item><see cref="Move"/>: <c>ScatterND(pool, to, GatherND(pool, from))</c> over every layer's buffers in one run,
/// with the outputs bound to the pools themselves (the kernels skip their input copy when the output is the input's
/// buffer). Token trees keep their accepted path this way.</item>
/// <item><see cref="Write"/>: the new rows of a pass into the pool, for slot graphs that return them instead of
/// writing them in (built before <see cref="SlotGraph.KvWriteFrom"/>).</item>
/// </list>
/// Sessions are built on first use. Not thread-safe: <see cref="SlotEngine"/> serializes every use under its lock.
/// </remarks>
internal sealed class KvPoolOps(TransformerModel model) : IDisposable
{
    private const string Pool = "pool", Fresh = "fresh", Out = "out", From = "from", To = "to";
    private InferenceSession? _zero, _resize, _move, _write;

    /// <summary>Zeroes <paramref name="target"/> (float [slots, heads, capacity, head_dim]).</summary>
    public void Zero(OrtValue target, long[] shape)
    {
        _zero ??= Create(ZeroGraph());
        using var dims = OrtValue.CreateTensorValueFromMemory(shape, [4]);
        Run(_zero, [("shape", dims)], target);
    }

    /// <summary>Copies the overlap of <paramref name="from"/> (<paramref name="fromShape"/>) into <paramref name="to"/> (<paramref name="toShape"/>) and zeroes the rest.</summary>
    public void Resize(OrtValue from, long[] fromShape, OrtValue to, long[] toShape)
    {
        _resize ??= Create(ResizeGraph());
        var ends = new long[4];
        var pads = new long[8];
        for (int i = 0; i < 4; i++)
        {
            ends[i] = Math.Min(fromShape[i], toShape[i]);
            pads[4 + i] = toShape[i] - ends[i];
        }
        using var e = OrtValue.CreateTensorValueFromMemory(ends, [4]);
        using var p = OrtValue.CreateTensorValueFromMemory(pads, [8]);
        Run(_resize, [(Pool, from), ("ends", e), ("pads", p)], to);
    }

    /// <summary>
    /// Within every buffer of <paramref name="pools"/> (each bound as input and output), copies the head_dim rows at
    /// <paramref name="from"/> [n, 3] (slot, head, position) to <paramref name="to"/> [n, 3]; all are read before any is written.
    /// </summary>
    public void Move(IReadOnlyList<OrtValue> pools, OrtValue from, OrtValue to)
    {
        _move ??= Create(MoveGraph(pools.Count));
        using var io = BindInPlace(_move, pools, null, from, to);
        _move.RunWithBinding(model.RunOptions, io);
    }

    /// <summary>
    /// A binding that writes rows of <paramref name="fresh"/> (each [rows, heads, seq, head_dim], flattened to rows of
    /// head_dim and picked by <paramref name="from"/> [n]) into <paramref name="pools"/> at <paramref name="to"/> [n, 3],
    /// in place: made once per pass shape, run after each pass with <see cref="RunWrite"/>, so a steady decode allocates
    /// nothing here either.
    /// </summary>
    public OrtIoBinding BindWrite(IReadOnlyList<OrtValue> pools, IReadOnlyList<OrtValue> fresh, OrtValue from, OrtValue to)
    {
        _write ??= Create(WriteGraph(pools.Count));
        return BindInPlace(_write, pools, fresh, from, to);
    }

    /// <summary>Runs a binding made by <see cref="BindWrite"/>.</summary>
    public void RunWrite(OrtIoBinding io) => _write!.RunWithBinding(model.RunOptions, io);

    /// <summary>Binds <c>from</c>, <c>to</c>, each pool as input and as its own output, and each fresh buffer beside its pool.</summary>
    private static OrtIoBinding BindInPlace(InferenceSession session, IReadOnlyList<OrtValue> pools, IReadOnlyList<OrtValue>? fresh, OrtValue from, OrtValue to)
    {
        var io = session.CreateIoBinding();
        try
        {
            io.BindInput(From, from);
            io.BindInput(To, to);
            for (int i = 0; i < pools.Count; i++)
            {
                io.BindInput($"{Pool}{i}", pools[i]);
                if (fresh is not null) io.BindInput($"{Fresh}{i}", fresh[i]);
                io.BindOutput($"{Out}{i}", pools[i]);
            }
            return io;
        }
        catch
        {
            io.Dispose();
            throw;
        }
    }

    /// <summary>Runs a graph of one output that is not also an input (zeroing, resizing).</summary>
    private void Run(InferenceSession session, IReadOnlyList<(string Name, OrtValue Value)> inputs, OrtValue output)
    {
        using var io = session.CreateIoBinding();
        foreach (var (name, value) in inputs) io.BindInput(name, value);
        io.BindOutput(Out, output);
        session.RunWithBinding(model.RunOptions, io);
    }

    private InferenceSession Create(byte[] graph)
    {
        using var options = model.Options.CreateSessionOptions();
        return new InferenceSession(graph, options);
    }

    private byte[] ZeroGraph()
    {
        var g = new OnnxGraphBuilder("kv_zero", opset: 17);
        g.AddInput("shape", OnnxDataType.Int64, 4);
        g.AddNode("ConstantOfShape", ["shape"], [Out], "", OnnxAttribute.Tensor("value", OnnxTensor.FromFloats("zero", [0f], 1)));
        g.AddOutput(Out, OnnxDataType.Float, "slots", model.KvHeads, "capacity", model.HeadDim);
        return g.ToBytes();
    }

    private byte[] ResizeGraph()
    {
        var g = new OnnxGraphBuilder("kv_resize", opset: 17);
        g.AddInput(Pool, OnnxDataType.Float, "old_slots", model.KvHeads, "old_capacity", model.HeadDim);
        g.AddInput("ends", OnnxDataType.Int64, 4);
        g.AddInput("pads", OnnxDataType.Int64, 8);
        string kept = g.Op("Slice", [Pool, g.Constant("starts", [0L, 0L, 0L, 0L], 4), "ends"]);
        g.AddNode("Pad", [kept, "pads"], [Out]);
        g.AddOutput(Out, OnnxDataType.Float, "slots", model.KvHeads, "capacity", model.HeadDim);
        return g.ToBytes();
    }

    private byte[] MoveGraph(int buffers)
    {
        var g = new OnnxGraphBuilder("kv_move", opset: 17);
        g.AddInput(From, OnnxDataType.Int64, "moves", 3);
        g.AddInput(To, OnnxDataType.Int64, "moves", 3);
        for (int i = 0; i < buffers; i++)
        {
            string pool = g.AddInput($"{Pool}{i}", OnnxDataType.Float, "slots", model.KvHeads, "capacity", model.HeadDim);
            g.AddNode("ScatterND", [pool, To, g.Op("GatherND", [pool, From])], [$"{Out}{i}"]);
            g.AddOutput($"{Out}{i}", OnnxDataType.Float, "slots", model.KvHeads, "capacity", model.HeadDim);
        }
        return g.ToBytes();
    }

    private byte[] WriteGraph(int buffers)
    {
        var g = new OnnxGraphBuilder("kv_write", opset: 17);
        g.AddInput(From, OnnxDataType.Int64, "writes");
        g.AddInput(To, OnnxDataType.Int64, "writes", 3);
        for (int i = 0; i < buffers; i++)
        {
            string pool = g.AddInput($"{Pool}{i}", OnnxDataType.Float, "rows", model.KvHeads, "capacity", model.HeadDim);
            string fresh = g.AddInput($"{Fresh}{i}", OnnxDataType.Float, "rows", model.KvHeads, "sequence_length", model.HeadDim);
            SlotGraph.WriteRows(g, pool, fresh, From, To, $"{Out}{i}", model.HeadDim);
            g.AddOutput($"{Out}{i}", OnnxDataType.Float, "rows", model.KvHeads, "capacity", model.HeadDim);
        }
        return g.ToBytes();
    }

    public void Dispose()
    {
        _zero?.Dispose();
        _resize?.Dispose();
        _move?.Dispose();
        _write?.Dispose();
        _zero = _resize = _move = _write = null;
    }
}

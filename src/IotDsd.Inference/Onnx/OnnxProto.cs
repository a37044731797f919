using Google.Protobuf;

namespace IotDsd.Inference.Onnx;

/// <summary>ONNX tensor element types used by this writer (values of <c>TensorProto.DataType</c>).</summary>
public enum OnnxDataType
{
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    BFloat16 = 16,
}

/// <summary>An ONNX attribute value; build one with the static factories.</summary>
public sealed class OnnxAttribute
{
    private OnnxAttribute(string name, int type) { Name = name; Type = type; }

    /// <summary>Attribute name.</summary>
    public string Name { get; }

    internal int Type { get; }
    internal float F { get; private init; }
    internal long I { get; private init; }
    internal string? S { get; private init; }
    internal OnnxTensor? T { get; private init; }
    internal float[]? Floats { get; private init; }
    internal long[]? Ints { get; private init; }
    internal string[]? Strings { get; private init; }

    public static OnnxAttribute Float(string name, float value) => new(name, 1) { F = value };
    public static OnnxAttribute Int(string name, long value) => new(name, 2) { I = value };
    public static OnnxAttribute String(string name, string value) => new(name, 3) { S = value };
    public static OnnxAttribute Tensor(string name, OnnxTensor value) => new(name, 4) { T = value };
    public static OnnxAttribute FloatList(string name, float[] values) => new(name, 6) { Floats = values };
    public static OnnxAttribute IntList(string name, long[] values) => new(name, 7) { Ints = values };
    public static OnnxAttribute StringList(string name, string[] values) => new(name, 8) { Strings = values };

    /// <summary>A subgraph (the branches of <c>If</c>, the body of <c>Loop</c>); it may read values of the enclosing graph.</summary>
    public static OnnxAttribute Graph(string name, OnnxGraphBuilder body) => new(name, 5) { Body = body };

    internal OnnxGraphBuilder? Body { get; private init; }

    internal void WriteTo(CodedOutputStream o)
    {
        o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString(Name);
        switch (Type)
        {
            case 1: o.WriteTag(2, WireFormat.WireType.Fixed32); o.WriteFloat(F); break;
            case 2: o.WriteTag(3, WireFormat.WireType.Varint); o.WriteInt64(I); break;
            case 3: o.WriteTag(4, WireFormat.WireType.LengthDelimited); o.WriteBytes(ByteString.CopyFromUtf8(S!)); break;
            case 4: OnnxProtoWriter.WriteMessage(o, 5, T!.WriteTo); break;
            case 5: OnnxProtoWriter.WriteMessage(o, 6, Body!.WriteGraph); break;
            case 6:
                o.WriteTag(7, WireFormat.WireType.LengthDelimited);
                o.WriteLength(Floats!.Length * 4);
                foreach (var f in Floats) o.WriteFloat(f);
                break;
            case 7:
                {
                    o.WriteTag(8, WireFormat.WireType.LengthDelimited);
                    int len = 0;
                    foreach (var v in Ints!) len += CodedOutputStream.ComputeInt64Size(v);
                    o.WriteLength(len);
                    foreach (var v in Ints) o.WriteInt64(v);
                    break;
                }
            case 8:
                foreach (var s in Strings!) { o.WriteTag(9, WireFormat.WireType.LengthDelimited); o.WriteBytes(ByteString.CopyFromUtf8(s)); }
                break;
        }
        o.WriteTag(20, WireFormat.WireType.Varint); o.WriteInt32(Type);
    }
}

/// <summary>A dense tensor (initializer or tensor attribute), stored as little-endian <c>raw_data</c>.</summary>
public sealed class OnnxTensor
{
    private readonly byte[] _raw;

    private OnnxTensor(string name, OnnxDataType type, long[] dims, byte[] raw)
    {
        Name = name; DataType = type; Dims = dims; _raw = raw;
    }

    public string Name { get; }
    public OnnxDataType DataType { get; }
    public IReadOnlyList<long> Dims { get; }

    public static OnnxTensor FromFloats(string name, ReadOnlySpan<float> data, params long[] dims) =>
        Create(name, OnnxDataType.Float, data, dims);

    public static OnnxTensor FromInt64s(string name, ReadOnlySpan<long> data, params long[] dims) =>
        Create(name, OnnxDataType.Int64, data, dims);

    public static OnnxTensor FromInt32s(string name, ReadOnlySpan<int> data, params long[] dims) =>
        Create(name, OnnxDataType.Int32, data, dims);

    public static OnnxTensor FromDoubles(string name, ReadOnlySpan<double> data, params long[] dims) =>
        Create(name, OnnxDataType.Double, data, dims);

    /// <summary>A tensor of any element type from its little-endian bytes (float16, bfloat16, int8, packed int4...).</summary>
    public static OnnxTensor FromBytes(string name, OnnxDataType type, ReadOnlySpan<byte> raw, params long[] dims) =>
        new(name, type, (long[])dims.Clone(), raw.ToArray());

    /// <summary>Size of the stored data in bytes.</summary>
    public int ByteLength => _raw.Length;

    private static OnnxTensor Create<T>(string name, OnnxDataType type, ReadOnlySpan<T> data, long[] dims) where T : unmanaged
    {
        long count = 1;
        foreach (var d in dims) count *= d;
        if (count != data.Length)
            throw new ArgumentException($"Tensor '{name}': {data.Length} elements do not fill shape [{string.Join(",", dims)}].");
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data needs a little-endian host.");
        var raw = System.Runtime.InteropServices.MemoryMarshal.AsBytes(data).ToArray();
        return new OnnxTensor(name, type, (long[])dims.Clone(), raw);
    }

    internal void WriteTo(CodedOutputStream o) => WriteTo(o, null, 0);

    /// <summary>Writes the TensorProto; with <paramref name="location"/>, the data lives in that file at <paramref name="offset"/>.</summary>
    internal void WriteTo(CodedOutputStream o, string? location, long offset)
    {
        foreach (var d in Dims) { o.WriteTag(1, WireFormat.WireType.Varint); o.WriteInt64(d); }
        o.WriteTag(2, WireFormat.WireType.Varint); o.WriteInt32((int)DataType);
        if (Name.Length > 0) { o.WriteTag(8, WireFormat.WireType.LengthDelimited); o.WriteString(Name); }
        if (location is null)
        {
            o.WriteTag(9, WireFormat.WireType.LengthDelimited); o.WriteBytes(UnsafeByteOperations.UnsafeWrap(_raw));
            return;
        }
        // external_data = 13 (StringStringEntryProto: key = 1, value = 2), data_location = 14 (1 = EXTERNAL)
        foreach (var (key, value) in ((string, string)[])[("location", location), ("offset", offset.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                     ("length", _raw.Length.ToString(System.Globalization.CultureInfo.InvariantCulture))])
        {
            OnnxProtoWriter.WriteMessage(o, 13, e =>
            {
                e.WriteTag(1, WireFormat.WireType.LengthDelimited); e.WriteString(key);
                e.WriteTag(2, WireFormat.WireType.LengthDelimited); e.WriteString(value);
            });
        }
        o.WriteTag(14, WireFormat.WireType.Varint); o.WriteInt32(1);
    }

    internal ReadOnlySpan<byte> Raw => _raw;
}

/// <summary>Helpers for writing nested protobuf messages without generated code.</summary>
internal static class OnnxProtoWriter
{
    /// <summary>Writes a length-delimited sub-message; the body is serialized once to measure it.</summary>
    public static void WriteMessage(CodedOutputStream o, int field, Action<CodedOutputStream> body)
    {
        var bytes = Serialize(body);
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(UnsafeByteOperations.UnsafeWrap(bytes));
    }

    public static byte[] Serialize(Action<CodedOutputStream> body)
    {
        using var ms = new MemoryStream();
        using (var o = new CodedOutputStream(ms, leaveOpen: true))
        {
            body(o);
            o.Flush();
        }
        return ms.ToArray();
    }
}

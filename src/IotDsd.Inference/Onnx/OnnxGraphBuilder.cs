using Google.Protobuf;

namespace IotDsd.Inference.Onnx;

/// <summary>
/// Builds an ONNX model (ModelProto) by hand: initializers, nodes with attributes, graph inputs and outputs.
/// Serializes with <see cref="CodedOutputStream"/> using the field numbers of <c>onnx.proto</c>; no generated code.
/// </summary>
public sealed class OnnxGraphBuilder
{
    /// <summary>Domain of the ONNX-ML operators (LabelEncoder, ...).</summary>
    public const string MlDomain = "ai.onnx.ml";

    private readonly List<OnnxTensor> _initializers = [];
    private readonly List<Node> _nodes = [];
    private readonly List<ValueInfo> _inputs = [];
    private readonly List<ValueInfo> _outputs = [];
    private readonly Dictionary<string, long> _opsets = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;

    /// <param name="graphName">GraphProto.name.</param>
    /// <param name="opset">Version of the default (ai.onnx) operator set.</param>
    public OnnxGraphBuilder(string graphName, long opset = 17)
    {
        GraphName = graphName;
        _opsets[""] = opset;
    }

    public string GraphName { get; }

    /// <summary>ModelProto.producer_name.</summary>
    public string ProducerName { get; set; } = "iotdsd";

    /// <summary>ModelProto.ir_version (8 matches opset 17 era runtimes).</summary>
    public long IrVersion { get; set; } = 8;

    /// <summary>Imports (or re-versions) an operator set domain.</summary>
    public OnnxGraphBuilder UseOpset(string domain, long version)
    {
        _opsets[domain] = version;
        return this;
    }

    /// <summary>Returns a fresh value name with the given prefix.</summary>
    public string UniqueName(string prefix)
    {
        string name;
        do { name = $"{prefix}_{_counter++}"; } while (!_names.Add(name));
        return name;
    }

    /// <summary>Declares a graph input. Dimensions: a non-negative number or a symbolic name (string).</summary>
    public string AddInput(string name, OnnxDataType type, params object[] dims)
    {
        Reserve(name);
        _inputs.Add(new ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares a graph output (an existing value name).</summary>
    public string AddOutput(string name, OnnxDataType type, params object[] dims)
    {
        _outputs.Add(new ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Adds a constant tensor; returns its value name.</summary>
    public string AddInitializer(OnnxTensor tensor)
    {
        Reserve(tensor.Name);
        _initializers.Add(tensor);
        return tensor.Name;
    }

    /// <summary>Adds a float initializer with a generated name.</summary>
    public string Constant(string prefix, ReadOnlySpan<float> data, params long[] dims) =>
        AddInitializer(OnnxTensor.FromFloats(UniqueName(prefix), data, dims));

    /// <summary>Adds an int64 initializer with a generated name.</summary>
    public string Constant(string prefix, ReadOnlySpan<long> data, params long[] dims) =>
        AddInitializer(OnnxTensor.FromInt64s(UniqueName(prefix), data, dims));

    /// <summary>Adds a node with one output named automatically; returns the output name.</summary>
    public string Op(string opType, string[] inputs, params OnnxAttribute[] attributes) =>
        Op(opType, inputs, 1, "", attributes)[0];

    /// <summary>Adds a node in <paramref name="domain"/> with one output; returns its name.</summary>
    public string OpInDomain(string domain, string opType, string[] inputs, params OnnxAttribute[] attributes) =>
        Op(opType, inputs, 1, domain, attributes)[0];

    /// <summary>Adds a node with <paramref name="outputCount"/> outputs named automatically.</summary>
    public string[] Op(string opType, string[] inputs, int outputCount, string domain, params OnnxAttribute[] attributes)
    {
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++) outputs[i] = UniqueName(opType.ToLowerInvariant());
        AddNode(opType, inputs, outputs, domain, attributes);
        return outputs;
    }

    /// <summary>Adds a node with explicit output names.</summary>
    public void AddNode(string opType, string[] inputs, string[] outputs, string domain = "", params OnnxAttribute[] attributes)
    {
        if (!_opsets.ContainsKey(domain))
            throw new InvalidOperationException($"Operator set '{domain}' is not imported; call UseOpset first.");
        foreach (var o in outputs) Reserve(o);
        _nodes.Add(new Node(UniqueName("node_" + opType), opType, domain, inputs, outputs, attributes));
    }

    /// <summary>Serializes the ModelProto.</summary>
    public byte[] ToBytes() => OnnxProtoWriter.Serialize(WriteModel);

    /// <summary>Writes the ModelProto to a file.</summary>
    public void Save(string path) => File.WriteAllBytes(path, ToBytes());

    /// <summary>
    /// Writes the ModelProto to <paramref name="path"/> with the data of every initializer of at least
    /// <paramref name="threshold"/> bytes in <paramref name="dataFile"/> beside it (ONNX external data, as exporters do for
    /// models over 2 GB: <c>model.onnx</c> + <c>model.onnx.data</c>; small constants stay inline, as with onnx.save_model).
    /// </summary>
    public void SaveWithExternalData(string path, string dataFile, int threshold = 1024)
    {
        ArgumentException.ThrowIfNullOrEmpty(dataFile);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        _externalOffsets = [];
        using (var data = File.Create(Path.Combine(dir, dataFile)))
        {
            foreach (var t in _initializers)
            {
                if (t.ByteLength < threshold) continue;
                _externalOffsets[t.Name] = data.Position;
                data.Write(t.Raw);
                while (data.Position % 64 != 0) data.WriteByte(0); // aligned, as onnx.save_model does for large tensors
            }
        }
        _externalFile = dataFile;
        try
        {
            File.WriteAllBytes(path, ToBytes());
        }
        finally
        {
            _externalFile = null;
            _externalOffsets = null;
        }
    }

    private string? _externalFile;
    private Dictionary<string, long>? _externalOffsets;

    private void Reserve(string name)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("Value names must be non-empty.", nameof(name));
        _names.Add(name);
    }

    private void WriteModel(CodedOutputStream o)
    {
        o.WriteTag(1, WireFormat.WireType.Varint); o.WriteInt64(IrVersion);
        o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString(ProducerName);
        OnnxProtoWriter.WriteMessage(o, 7, WriteGraph);
        foreach (var (domain, version) in _opsets)
        {
            OnnxProtoWriter.WriteMessage(o, 8, m =>
            {
                m.WriteTag(1, WireFormat.WireType.LengthDelimited); m.WriteString(domain);
                m.WriteTag(2, WireFormat.WireType.Varint); m.WriteInt64(version);
            });
        }
    }

    internal void WriteGraph(CodedOutputStream o)
    {
        foreach (var n in _nodes) OnnxProtoWriter.WriteMessage(o, 1, n.WriteTo);
        o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString(GraphName);
        foreach (var t in _initializers)
        {
            if (_externalFile is not null && _externalOffsets!.TryGetValue(t.Name, out var offset))
                OnnxProtoWriter.WriteMessage(o, 5, m => t.WriteTo(m, _externalFile, offset));
            else OnnxProtoWriter.WriteMessage(o, 5, t.WriteTo);
        }
        foreach (var i in _inputs) OnnxProtoWriter.WriteMessage(o, 11, i.WriteTo);
        foreach (var i in _outputs) OnnxProtoWriter.WriteMessage(o, 12, i.WriteTo);
    }

    private sealed record Node(string Name, string OpType, string Domain, string[] Inputs, string[] Outputs, OnnxAttribute[] Attributes)
    {
        public void WriteTo(CodedOutputStream o)
        {
            foreach (var i in Inputs) { o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString(i); }
            foreach (var i in Outputs) { o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString(i); }
            o.WriteTag(3, WireFormat.WireType.LengthDelimited); o.WriteString(Name);
            o.WriteTag(4, WireFormat.WireType.LengthDelimited); o.WriteString(OpType);
            foreach (var a in Attributes) OnnxProtoWriter.WriteMessage(o, 5, a.WriteTo);
            if (Domain.Length > 0) { o.WriteTag(7, WireFormat.WireType.LengthDelimited); o.WriteString(Domain); }
        }
    }

    private sealed record ValueInfo(string Name, OnnxDataType Type, object[] Dims)
    {
        public void WriteTo(CodedOutputStream o)
        {
            o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString(Name);
            // TypeProto { tensor_type = 1: Tensor { elem_type = 1, shape = 2: TensorShapeProto { dim = 1 } } }
            OnnxProtoWriter.WriteMessage(o, 2, type => OnnxProtoWriter.WriteMessage(type, 1, tensor =>
            {
                tensor.WriteTag(1, WireFormat.WireType.Varint); tensor.WriteInt32((int)Type);
                OnnxProtoWriter.WriteMessage(tensor, 2, shape =>
                {
                    foreach (var d in Dims)
                    {
                        OnnxProtoWriter.WriteMessage(shape, 1, dim =>
                        {
                            switch (d)
                            {
                                case string p: dim.WriteTag(2, WireFormat.WireType.LengthDelimited); dim.WriteString(p); break;
                                case int v: dim.WriteTag(1, WireFormat.WireType.Varint); dim.WriteInt64(v); break;
                                case long v: dim.WriteTag(1, WireFormat.WireType.Varint); dim.WriteInt64(v); break;
                                default: throw new ArgumentException($"Dimension of '{Name}' must be a number or a name, not {d}.");
                            }
                        });
                    }
                });
            }));
        }
    }
}

namespace IotDsd.Inference.Onnx;

/// <summary>
/// Lists the operators an ONNX file uses (domain and type, subgraphs included) by walking its ModelProto: initializers
/// and everything else are skipped by seeking, never read, so a model of any size costs a few small reads.
/// </summary>
public static class OnnxOperators
{
    /// <summary>Microsoft's contrib operator domain (GroupQueryAttention, MatMulNBits, RotaryEmbedding, ...).</summary>
    public const string MicrosoftDomain = "com.microsoft";

    /// <summary>Distinct operators as <c>domain:op_type</c> (the default domain written as empty).</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf ModelProto.</exception>
    public static IReadOnlySet<string> Read(string path) => Summarize(path).Operators;

    /// <summary>The operators and the element types of the main graph's inputs (<c>TensorProto.DataType</c> values).</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf ModelProto.</exception>
    public static (IReadOnlySet<string> Operators, IReadOnlySet<int> InputTypes) Summarize(string path)
    {
        var ops = new HashSet<string>(StringComparer.Ordinal);
        var types = new HashSet<int>();
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
        var reader = new Reader(file);
        try
        {
            reader.Fields(file.Length, (field, end) =>
            {
                if (field != 7) return false; // ModelProto.graph
                Graph(reader, end, ops, types, 0);
                return true;
            });
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("the file ends inside a field", e);
        }
        return (ops, types);
    }

    private static void Graph(Reader reader, long end, HashSet<string> ops, HashSet<int> types, int depth)
    {
        if (depth > 16) throw new InvalidDataException("subgraphs nested deeper than 16");
        reader.Fields(end, (field, nodeEnd) =>
        {
            if (field == 11 && depth == 0) // GraphProto.input: ValueInfoProto.type (2) → tensor_type (1) → elem_type (1)
            {
                reader.Fields(nodeEnd, (f, e) => f == 2 && Visit(reader, e, (f2, e2) => f2 == 1 && Visit(reader, e2, null, (f3, v) =>
                {
                    if (f3 == 1 && v < 64) types.Add((int)v);
                })));
                return true;
            }
            if (field != 1) return false; // GraphProto.node
            string type = "", domain = "";
            reader.Fields(nodeEnd, (f, e) =>
            {
                switch (f)
                {
                    case 4: type = reader.String(e); return true;   // op_type
                    case 7: domain = reader.String(e); return true; // domain
                    case 5: // attribute: g = 6, graphs = 11
                        reader.Fields(e, (a, ae) =>
                        {
                            if (a is not (6 or 11)) return false;
                            Graph(reader, ae, ops, types, depth + 1);
                            return true;
                        });
                        return true;
                    default: return false;
                }
            });
            ops.Add((domain == "ai.onnx" ? "" : domain) + ":" + type);
            return true;
        });
    }

    private static bool Visit(Reader reader, long end, Func<int, long, bool>? visit, Action<int, ulong>? varint = null)
    {
        reader.Fields(end, visit ?? ((_, _) => false), varint);
        return true;
    }

    private sealed class Reader(Stream stream)
    {
        /// <summary>
        /// Visits the fields up to <paramref name="end"/>; length-delimited ones go to <paramref name="visit"/>, which
        /// returns false to skip, and varints to <paramref name="varint"/>.
        /// </summary>
        public void Fields(long end, Func<int, long, bool> visit, Action<int, ulong>? varint = null)
        {
            while (stream.Position < end)
            {
                ulong tag = Varint(end);
                int field = (int)(tag >> 3);
                switch ((int)(tag & 7))
                {
                    case 0:
                        {
                            ulong value = Varint(end);
                            varint?.Invoke(field, value);
                            break;
                        }
                    case 1: Skip(8, end); break;
                    case 5: Skip(4, end); break;
                    case 2:
                        {
                            ulong length = Varint(end);
                            if (length > (ulong)(end - stream.Position)) throw new InvalidDataException("a field runs past its message");
                            long fieldEnd = stream.Position + (long)length;
                            if (!visit(field, fieldEnd) || stream.Position != fieldEnd) stream.Position = fieldEnd;
                            break;
                        }
                    default: throw new InvalidDataException($"wire type {tag & 7} is not used by ONNX");
                }
            }
            if (stream.Position != end) throw new InvalidDataException("a field runs past its message");
        }

        public string String(long end)
        {
            long length = end - stream.Position;
            if (length > 4096) throw new InvalidDataException("an operator name longer than 4096 bytes");
            var bytes = new byte[length];
            stream.ReadExactly(bytes);
            return System.Text.Encoding.UTF8.GetString(bytes);
        }

        private void Skip(int count, long end)
        {
            if (stream.Position + count > end) throw new InvalidDataException("a field runs past its message");
            stream.Position += count;
        }

        /// <summary>A varint that must end at or before <paramref name="end"/>.</summary>
        private ulong Varint(long end)
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (stream.Position >= end) throw new InvalidDataException("a varint runs past its message");
                int b = stream.ReadByte();
                if (b < 0) throw new InvalidDataException("the file ends inside a field");
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return value;
            }
            throw new InvalidDataException("a malformed varint");
        }
    }
}

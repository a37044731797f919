using System.Runtime.InteropServices;
using System.Text.Json;
using IotDsd.Inference.Onnx;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests.Transformer;

public enum FixtureAttention
{
    /// <summary>Standard operators: rotary by Gather/Slice, grouped-query attention by broadcasting MatMul (Optimum's graphs).</summary>
    Plain,

    /// <summary>com.microsoft GroupQueryAttention with the rotary inside (onnxruntime-genai's builder).</summary>
    GroupQuery,

    /// <summary>com.microsoft RotaryEmbedding + MultiHeadAttention with past_key/past_value (the ORT transformer optimizer's fusion).</summary>
    MultiHead,
}

public enum FixtureWeights { Float, Int8, Int4 }

/// <summary>
/// One tiny decoder-only transformer in the signature of a real export: Llama-shaped (rotary positions, grouped-query
/// attention, SiLU MLP) and written by the project's own ONNX writer with the input/output names, element types,
/// shapes and operator domains the exporters use (head_dim 16: GroupQueryAttention on the CPU needs a multiple of 16). Every variant of one <see cref="Seed"/> computes the same function,
/// so its greedy output can be compared with the plain float32 fixture's.
/// </summary>
public sealed record ExportSpec
{
    public int Seed { get; init; } = 3;
    public int Vocab { get; init; } = 256;

    /// <summary>Logits row width; above <see cref="Vocab"/> the extra ids are padding (Qwen-style).</summary>
    public int LogitsWidth { get; init; } = 256;
    public int Hidden { get; init; } = 64;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Layers { get; init; } = 2;
    public int MaxPositions { get; init; } = 256;

    /// <summary>Compute and IO type: Float, Float16 or BFloat16.</summary>
    public OnnxDataType Type { get; init; } = OnnxDataType.Float;

    /// <summary>With <see cref="Type"/> BFloat16: compute in float32 and cast at the graph's inputs and outputs.</summary>
    public bool CastAtBoundary { get; init; }
    public OnnxDataType Ids { get; init; } = OnnxDataType.Int64;
    public OnnxDataType Mask { get; init; } = OnnxDataType.Int64;

    /// <summary>False: no position_ids input; the graph counts positions from the past's length (or GQA from the mask).</summary>
    public bool PositionIds { get; init; } = true;
    public FixtureAttention Attention { get; init; } = FixtureAttention.Plain;
    public FixtureWeights Weights { get; init; } = FixtureWeights.Float;

    /// <summary>With quantized <see cref="Weights"/>: write the dequantized weights as float32 (the reference).</summary>
    public bool Dequantized { get; init; }

    /// <summary>Optimum's merged decoder: a use_cache_branch input choosing between two subgraphs with If.</summary>
    public bool Merged { get; init; }
    public string PastKey { get; init; } = "past_key_values.%d.key";
    public string PastValue { get; init; } = "past_key_values.%d.value";
    public string PresentKey { get; init; } = "present.%d.key";
    public string PresentValue { get; init; } = "present.%d.value";

    /// <summary>Key and value stacked in one tensor per layer, <c>past_%d</c> → <c>present_%d</c> [2, batch, heads, seq, head_dim] (ORT's GPT-2 converter).</summary>
    public bool Stacked { get; init; }

    /// <summary>An extra MatMul of the logits by a large weight on padded ids, so that an unmasked runner would pick them.</summary>
    public float PaddingBoost { get; init; } = 8f;

    public int HeadDim => Hidden / Heads;
}

public static class ExportFixture
{
    private const int Mlp = 64;

    /// <summary>Writes the decoder of <paramref name="spec"/> to <paramref name="path"/> (with <paramref name="externalData"/> beside it when given).</summary>
    public static void Write(ExportSpec spec, string path, string? externalData = null)
    {
        var g = Build(spec);
        if (externalData is null) g.Save(path);
        else g.SaveWithExternalData(path, externalData);
    }

    /// <summary>A directory as Optimum writes it: the decoder, config.json and a byte-level tokenizer.json.</summary>
    public static string OptimumDirectory(ExportSpec spec, string dir, string file = "model.onnx", object? config = null, string? externalData = null)
    {
        Directory.CreateDirectory(dir);
        Write(spec, Path.Combine(dir, file), externalData);
        HfBpeTokenizer.WriteByteVocabulary(Path.Combine(dir, "tokenizer.json"));
        config ??= new Dictionary<string, object>
        {
            ["model_type"] = "llama", ["vocab_size"] = spec.LogitsWidth, ["max_position_embeddings"] = spec.MaxPositions,
            ["num_hidden_layers"] = spec.Layers, ["num_attention_heads"] = spec.Heads, ["num_key_value_heads"] = spec.KvHeads,
            ["hidden_size"] = spec.Hidden,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config));
        return dir;
    }

    /// <summary>A directory as onnxruntime-genai's model builder writes it: model.onnx, genai_config.json, tokenizer.json.</summary>
    public static string GenAiDirectory(ExportSpec spec, string dir, string? externalData = "model.onnx.data", string file = "model.onnx")
    {
        Directory.CreateDirectory(dir);
        Write(spec, Path.Combine(dir, file), externalData);
        HfBpeTokenizer.WriteByteVocabulary(Path.Combine(dir, "tokenizer.json"));
        var inputs = new Dictionary<string, string> { ["input_ids"] = "input_ids", ["attention_mask"] = "attention_mask" };
        var outputs = new Dictionary<string, string> { ["logits"] = "logits" };
        if (spec.Stacked)
        {
            inputs["past_names"] = "past_%d";
            outputs["present_names"] = "present_%d";
        }
        else
        {
            inputs["past_key_names"] = spec.PastKey;
            inputs["past_value_names"] = spec.PastValue;
            outputs["present_key_names"] = spec.PresentKey;
            outputs["present_value_names"] = spec.PresentValue;
        }
        if (spec.PositionIds) inputs["position_ids"] = "position_ids";
        var config = new
        {
            model = new
            {
                bos_token_id = 1, context_length = spec.MaxPositions, eos_token_id = new[] { 2 }, pad_token_id = 0, type = "llama",
                vocab_size = spec.LogitsWidth,
                decoder = new
                {
                    filename = file, head_size = spec.HeadDim, hidden_size = spec.Hidden, num_attention_heads = spec.Heads,
                    num_hidden_layers = spec.Layers, num_key_value_heads = spec.KvHeads, inputs, outputs,
                },
            },
            search = new { max_length = spec.MaxPositions, do_sample = false },
        };
        File.WriteAllText(Path.Combine(dir, "genai_config.json"), JsonSerializer.Serialize(config));
        return dir;
    }

    private static OnnxGraphBuilder Build(ExportSpec s)
    {
        bool boundary = s.CastAtBoundary;
        var t = boundary ? OnnxDataType.Float : s.Type; // compute type
        var io = s.Type;                                // cache and logits type
        int e = s.Hidden, h = s.Heads, kv = s.KvHeads, d = s.HeadDim, groups = h / kv;
        var rng = new Random(s.Seed);
        var g = new OnnxGraphBuilder("decoder", 17);
        g.UseOpset(OnnxOperators.MicrosoftDomain, 1);

        string ids = g.AddInput("input_ids", s.Ids, "batch_size", "sequence_length");
        string mask = g.AddInput("attention_mask", s.Mask, "batch_size", "total_sequence_length");
        string? positionIds = s.PositionIds ? g.AddInput("position_ids", OnnxDataType.Int64, "batch_size", "sequence_length") : null;
        var pastK = new string[s.Layers];
        var pastV = new string[s.Layers];
        for (int l = 0; l < s.Layers; l++)
        {
            if (s.Stacked)
            {
                string both = g.AddInput($"past_{l}", io, 2, "batch_size", kv, "past_sequence_length", d);
                pastK[l] = g.Op("Gather", [both, g.Constant("key_index", [0L])], OnnxAttribute.Int("axis", 0));
                pastV[l] = g.Op("Gather", [both, g.Constant("value_index", [1L])], OnnxAttribute.Int("axis", 0));
                continue;
            }
            pastK[l] = g.AddInput(Format(s.PastKey, l), io, "batch_size", kv, "past_sequence_length", d);
            pastV[l] = g.AddInput(Format(s.PastValue, l), io, "batch_size", kv, "past_sequence_length", d);
        }
        if (s.Merged) g.AddInput("use_cache_branch", OnnxDataType.Bool, 1);

        string ToCompute(string x) => boundary ? g.Op("Cast", [x], OnnxAttribute.Int("to", (long)OnnxDataType.Float)) : x;
        string W(string name, float[] data, params long[] dims) => g.AddInitializer(Tensor(name, t, data, dims));
        string Scalar(float value) => W(g.UniqueName("c"), [value]);

        float[] Gaussian(int n, float std)
        {
            var a = new float[n];
            for (int i = 0; i < n; i++) a[i] = std * (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
            return a;
        }

        string Linear(string x, string name, int inputs, int outputs)
        {
            var w = Gaussian(inputs * outputs, 1f / MathF.Sqrt(inputs)); // [inputs, outputs], row-major
            switch (s.Weights)
            {
                case FixtureWeights.Int8:
                    {
                        var (q, scales) = QuantizeInt8(w, inputs, outputs);
                        if (s.Dequantized) return g.Op("MatMul", [x, W(name, DequantizeInt8(q, scales, inputs, outputs), inputs, outputs)]);
                        string wq = g.AddInitializer(OnnxTensor.FromBytes(name + "_quantized", OnnxDataType.Int8, MemoryMarshal.AsBytes(q.AsSpan()), inputs, outputs));
                        string sc = W(name + "_scale", scales, outputs);
                        string zp = g.AddInitializer(OnnxTensor.FromBytes(name + "_zero_point", OnnxDataType.Int8, new byte[outputs], outputs));
                        return g.Op("MatMul", [x, g.Op("DequantizeLinear", [wq, sc, zp], OnnxAttribute.Int("axis", 1))]);
                    }
                case FixtureWeights.Int4:
                    {
                        const int block = 16;
                        var (packed, scales, dequantized) = QuantizeInt4(w, inputs, outputs, block);
                        if (s.Dequantized) return g.Op("MatMul", [x, W(name, dequantized, inputs, outputs)]);
                        string b = g.AddInitializer(OnnxTensor.FromBytes(name + "_Q4", OnnxDataType.UInt8, packed, outputs, inputs / block, block / 2));
                        string sc = W(name + "_scales", scales, outputs * (inputs / block));
                        return g.OpInDomain(OnnxOperators.MicrosoftDomain, "MatMulNBits", [x, b, sc],
                            OnnxAttribute.Int("K", inputs), OnnxAttribute.Int("N", outputs), OnnxAttribute.Int("bits", 4), OnnxAttribute.Int("block_size", block));
                    }
                default:
                    return g.Op("MatMul", [x, W(name, w, inputs, outputs)]);
            }
        }

        string Norm(string x, string name)
        {
            var gamma = new float[e];
            Array.Fill(gamma, 1f);
            return g.Op("LayerNormalization", [x, W(name + ".weight", gamma, e), W(name + ".bias", new float[e], e)],
                OnnxAttribute.Int("axis", -1), OnnxAttribute.Float("epsilon", 1e-5f));
        }

        // Rotary caches [max_positions, d/2] (rotate-half convention, base 10000).
        var cos = new float[s.MaxPositions * d / 2];
        var sin = new float[s.MaxPositions * d / 2];
        for (int p = 0; p < s.MaxPositions; p++)
        {
            for (int i = 0; i < d / 2; i++)
            {
                double angle = p / Math.Pow(10000, 2.0 * i / d);
                cos[p * d / 2 + i] = (float)Math.Cos(angle);
                sin[p * d / 2 + i] = (float)Math.Sin(angle);
            }
        }
        string cosCache = W("cos_cache", cos, s.MaxPositions, d / 2);
        string sinCache = W("sin_cache", sin, s.MaxPositions, d / 2);

        string wte = W("model.embed_tokens.weight", Gaussian(s.Vocab * e, 1f), s.Vocab, e);
        string x = g.Op("Gather", [wte, ids], OnnxAttribute.Int("axis", 0));

        // Positions and the additive mask for the plain path.
        string zero = g.Constant("zero", [0L], 1);
        string one = g.Constant("one", [1L], 1);
        string two = g.Constant("two", [2L], 1);
        string total = g.Op("Squeeze", [g.Op("Shape", [mask], OnnxAttribute.Int("start", 1))]);
        string seq = g.Op("Squeeze", [g.Op("Shape", [ids], OnnxAttribute.Int("start", 1))]);
        string sZero = g.Op("Squeeze", [zero]);
        string sOne = g.Op("Squeeze", [one]);
        string positions = positionIds ?? g.Op("Range", [g.Op("Sub", [total, seq]), total, sOne]); // from the past's length
        string cosP = g.Op("Unsqueeze", [g.Op("Gather", [cosCache, positions], OnnxAttribute.Int("axis", 0)), positionIds is null ? zero : one]);
        string sinP = g.Op("Unsqueeze", [g.Op("Gather", [sinCache, positions], OnnxAttribute.Int("axis", 0)), positionIds is null ? zero : one]);
        string keys = g.Op("Range", [sZero, total, sOne]);
        string queries = g.Op("Range", [g.Op("Sub", [total, seq]), total, sOne]);
        string causal = g.Op("LessOrEqual", [g.Op("Unsqueeze", [keys, zero]), g.Op("Unsqueeze", [queries, one])]);
        string valid = g.Op("Unsqueeze", [g.Op("Cast", [mask], OnnxAttribute.Int("to", (long)OnnxDataType.Bool)), g.Constant("axes", [1L, 2L, 3L], 3)]);
        string bias = g.Op("Where", [g.Op("And", [causal, valid]), Scalar(0f), Scalar(-1e4f)]); // [B,1,1,S,T]

        // GroupQueryAttention reads the mask as lengths; MultiHeadAttention takes it as an int32 key padding mask.
        string seqlens = g.Op("Cast", [g.Op("Sub", [g.Op("ReduceSum", [mask, one], OnnxAttribute.Int("keepdims", 0)), g.Op("CastLike", [one, mask])])], OnnxAttribute.Int("to", (long)OnnxDataType.Int32));
        string totalLength = g.Op("Cast", [g.Op("Gather", [g.Op("Shape", [mask]), g.Op("Squeeze", [one])], OnnxAttribute.Int("axis", 0))], OnnxAttribute.Int("to", (long)OnnxDataType.Int32));
        string mask32 = g.Op("Cast", [mask], OnnxAttribute.Int("to", (long)OnnxDataType.Int32));

        string Rope(string x4)
        {
            string half = g.Constant("half", [(long)d / 2], 1);
            string full = g.Constant("full", [(long)d], 1);
            string axis = g.Constant("axis3", [3L], 1);
            string x1 = g.Op("Slice", [x4, zero, half, axis]);
            string x2 = g.Op("Slice", [x4, half, full, axis]);
            return g.Op("Concat", [g.Op("Sub", [g.Op("Mul", [x1, cosP]), g.Op("Mul", [x2, sinP])]), g.Op("Add", [g.Op("Mul", [x2, cosP]), g.Op("Mul", [x1, sinP])])], OnnxAttribute.Int("axis", 3));
        }

        var presentK = new string[s.Layers];
        var presentV = new string[s.Layers];
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            string hn = Norm(x, p + "input_layernorm");
            string q = Linear(hn, p + "q_proj", e, h * d);
            string k = Linear(hn, p + "k_proj", e, kv * d);
            string v = Linear(hn, p + "v_proj", e, kv * d);
            string pk = ToCompute(pastK[l]), pv = ToCompute(pastV[l]);
            string ctx;
            switch (s.Attention)
            {
                case FixtureAttention.GroupQuery:
                    {
                        var o = g.Op("GroupQueryAttention", [q, k, v, pk, pv, seqlens, totalLength, cosCache, sinCache], 3, OnnxOperators.MicrosoftDomain,
                            OnnxAttribute.Int("num_heads", h), OnnxAttribute.Int("kv_num_heads", kv), OnnxAttribute.Int("do_rotary", 1),
                            OnnxAttribute.Int("rotary_interleaved", 0), OnnxAttribute.Float("scale", 1f / MathF.Sqrt(d)));
                        (ctx, presentK[l], presentV[l]) = (o[0], o[1], o[2]);
                        break;
                    }
                case FixtureAttention.MultiHead:
                    {
                        string qr = g.OpInDomain(OnnxOperators.MicrosoftDomain, "RotaryEmbedding", [q, positionIds!, cosCache, sinCache],
                            OnnxAttribute.Int("interleaved", 0), OnnxAttribute.Int("num_heads", h));
                        string kr = g.OpInDomain(OnnxOperators.MicrosoftDomain, "RotaryEmbedding", [k, positionIds!, cosCache, sinCache],
                            OnnxAttribute.Int("interleaved", 0), OnnxAttribute.Int("num_heads", kv));
                        var o = g.Op("MultiHeadAttention", [qr, kr, v, "", mask32, "", pk, pv], 3, OnnxOperators.MicrosoftDomain,
                            OnnxAttribute.Int("num_heads", h), OnnxAttribute.Int("unidirectional", 1), OnnxAttribute.Float("scale", 1f / MathF.Sqrt(d)));
                        (ctx, presentK[l], presentV[l]) = (o[0], o[1], o[2]);
                        break;
                    }
                default:
                    {
                        string Heads(string y, int n) => g.Op("Transpose", [g.Op("Reshape", [y, g.Constant("shape", [0L, 0L, n, d], 4)])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
                        string q4 = Rope(Heads(q, h));
                        presentK[l] = g.Op("Concat", [pk, Rope(Heads(k, kv))], OnnxAttribute.Int("axis", 2));
                        presentV[l] = g.Op("Concat", [pv, Heads(v, kv)], OnnxAttribute.Int("axis", 2));
                        string q5 = g.Op("Reshape", [q4, g.Constant("grouped", [0L, kv, groups, -1L, d], 5)]);
                        string k5 = g.Op("Transpose", [g.Op("Unsqueeze", [presentK[l], two])], OnnxAttribute.IntList("perm", [0, 1, 2, 4, 3]));
                        string scores = g.Op("Add", [g.Op("Mul", [g.Op("MatMul", [q5, k5]), Scalar(1f / MathF.Sqrt(d))]), bias]);
                        string probs = g.Op("Softmax", [scores], OnnxAttribute.Int("axis", -1));
                        string c5 = g.Op("MatMul", [probs, g.Op("Unsqueeze", [presentV[l], two])]);
                        string c4 = g.Op("Transpose", [g.Op("Reshape", [c5, g.Constant("ungrouped", [0L, h, -1L, d], 4)])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
                        ctx = g.Op("Reshape", [c4, g.Constant("merged", [0L, 0L, h * d], 3)]);
                        break;
                    }
            }
            x = g.Op("Add", [x, Linear(ctx, p + "o_proj", h * d, e)]);
            string h2 = Norm(x, p + "post_attention_layernorm");
            string up = Linear(h2, p + "up_proj", e, Mlp);
            string act = g.Op("Mul", [up, g.Op("Sigmoid", [up])]);
            x = g.Op("Add", [x, Linear(act, p + "down_proj", Mlp, e)]);
        }

        string final = Norm(x, "model.norm");
        var head = Gaussian(e * s.LogitsWidth, 1f / MathF.Sqrt(e));
        string logits = g.Op("MatMul", [final, W("lm_head.weight", head, e, s.LogitsWidth)]);
        if (s.LogitsWidth > s.Vocab)
        {
            var boost = new float[s.LogitsWidth];
            for (int i = s.Vocab; i < s.LogitsWidth; i++) boost[i] = s.PaddingBoost;
            logits = g.Op("Add", [logits, W("padding_bias", boost, s.LogitsWidth)]);
        }

        string ToIo(string y) => boundary ? g.Op("Cast", [y], OnnxAttribute.Int("to", (long)io)) : y;
        var results = new List<(string Value, string Name, object[] Dims)>
        {
            (ToIo(logits), "logits", ["batch_size", "sequence_length", s.LogitsWidth]),
        };
        for (int l = 0; l < s.Layers; l++)
        {
            if (s.Stacked)
            {
                string both = g.Op("Concat", [g.Op("Unsqueeze", [ToIo(presentK[l]), zero]), g.Op("Unsqueeze", [ToIo(presentV[l]), zero])], OnnxAttribute.Int("axis", 0));
                results.Add((both, $"present_{l}", [2, "batch_size", kv, "total_sequence_length", d]));
                continue;
            }
            results.Add((ToIo(presentK[l]), Format(s.PresentKey, l), ["batch_size", kv, "total_sequence_length", d]));
            results.Add((ToIo(presentV[l]), Format(s.PresentValue, l), ["batch_size", kv, "total_sequence_length", d]));
        }

        if (s.Merged)
        {
            // Optimum's merged decoder: If(use_cache_branch) { decoder with past } else { decoder without }. The else
            // branch here negates the logits, so a runner that fed use_cache_branch = false would be caught.
            var then = new OnnxGraphBuilder("with_past");
            var otherwise = new OnnxGraphBuilder("without_past");
            foreach (var (value, name, dims) in results)
            {
                then.AddNode("Identity", [value], ["then_" + name]);
                then.AddOutput("then_" + name, io, dims);
                otherwise.AddNode(name == "logits" ? "Neg" : "Identity", [value], ["else_" + name]);
                otherwise.AddOutput("else_" + name, io, dims);
            }
            g.AddNode("If", ["use_cache_branch"], [.. results.Select(r => r.Name)], "",
                OnnxAttribute.Graph("then_branch", then), OnnxAttribute.Graph("else_branch", otherwise));
        }
        else
        {
            foreach (var (value, name, _) in results) g.AddNode("Identity", [value], [name]);
        }
        foreach (var (_, name, dims) in results) g.AddOutput(name, io, dims);
        return g;
    }

    private static string Format(string pattern, int layer) => pattern.Replace("%d", layer.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

    private static OnnxTensor Tensor(string name, OnnxDataType type, float[] data, long[] dims)
    {
        switch (type)
        {
            case OnnxDataType.Float16:
                {
                    var h = new Half[data.Length];
                    for (int i = 0; i < data.Length; i++) h[i] = (Half)data[i];
                    return OnnxTensor.FromBytes(name, type, MemoryMarshal.AsBytes(h.AsSpan()), dims);
                }
            case OnnxDataType.BFloat16:
                {
                    var b = new ushort[data.Length];
                    for (int i = 0; i < data.Length; i++)
                    {
                        uint bits = BitConverter.SingleToUInt32Bits(data[i]);
                        b[i] = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16); // round to nearest even
                    }
                    return OnnxTensor.FromBytes(name, type, MemoryMarshal.AsBytes(b.AsSpan()), dims);
                }
            default:
                return OnnxTensor.FromFloats(name, data, dims);
        }
    }

    /// <summary>Symmetric per-output-column int8: scale = max |w| / 127.</summary>
    private static (sbyte[] Q, float[] Scales) QuantizeInt8(float[] w, int rows, int cols)
    {
        var q = new sbyte[w.Length];
        var scales = new float[cols];
        for (int c = 0; c < cols; c++)
        {
            float max = 0;
            for (int r = 0; r < rows; r++) max = Math.Max(max, Math.Abs(w[r * cols + c]));
            scales[c] = max > 0 ? max / 127f : 1f;
            for (int r = 0; r < rows; r++) q[r * cols + c] = (sbyte)Math.Clamp(MathF.Round(w[r * cols + c] / scales[c]), -127, 127);
        }
        return (q, scales);
    }

    private static float[] DequantizeInt8(sbyte[] q, float[] scales, int rows, int cols)
    {
        var w = new float[q.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) w[r * cols + c] = q[r * cols + c] * scales[c];
        return w;
    }

    /// <summary>
    /// MatMulNBits' layout: for output column n and block b of <paramref name="block"/> inputs, 4-bit values
    /// (q - 8) · scale packed two per byte, low nibble first; B is [N, K / block, block / 2], scales [N, K / block].
    /// </summary>
    private static (byte[] Packed, float[] Scales, float[] Dequantized) QuantizeInt4(float[] w, int k, int n, int block)
    {
        int blocks = k / block;
        var packed = new byte[n * blocks * block / 2];
        var scales = new float[n * blocks];
        var dequantized = new float[w.Length];
        for (int c = 0; c < n; c++)
        {
            for (int b = 0; b < blocks; b++)
            {
                float max = 0;
                for (int i = 0; i < block; i++) max = Math.Max(max, Math.Abs(w[(b * block + i) * n + c]));
                float scale = max > 0 ? max / 7f : 1f;
                scales[c * blocks + b] = scale;
                for (int i = 0; i < block; i++)
                {
                    int r = b * block + i;
                    int q = Math.Clamp((int)MathF.Round(w[r * n + c] / scale) + 8, 0, 15);
                    dequantized[r * n + c] = (q - 8) * scale;
                    int at = (c * blocks + b) * block / 2 + i / 2;
                    packed[at] |= (byte)(i % 2 == 0 ? q : q << 4);
                }
            }
        }
        return (packed, scales, dequantized);
    }
}

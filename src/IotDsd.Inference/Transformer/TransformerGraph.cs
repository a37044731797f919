using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Writes a GPT-2-style decoder-only transformer as ONNX (opset 17, standard operators only) in the signature that
/// Hugging Face Optimum exports for <c>text-generation-with-past</c>:
/// inputs <c>input_ids</c> [batch, seq], <c>attention_mask</c> [batch, past+seq], <c>position_ids</c> [batch, seq],
/// <c>past_key_values.N.key/value</c> [batch, heads, past, head_dim]; outputs <c>logits</c> [batch, seq, vocab] and
/// <c>present.N.key/value</c> [batch, heads, past+seq, head_dim] (past and new keys concatenated).
/// </summary>
/// <remarks>
/// Query <c>i</c> of the new chunk sits at key index <c>past + i</c> and may attend to key <c>j</c> when
/// <c>j ≤ past + i</c> and <c>attention_mask[j] = 1</c> — the same rule as Hugging Face's causal mask, so padded
/// slots anywhere in the past are ignored.
/// </remarks>
public static class TransformerGraph
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string PositionIds = "position_ids";
    public const string Logits = "logits";

    public static string PastKey(int layer) => $"past_key_values.{layer}.key";
    public static string PastValue(int layer) => $"past_key_values.{layer}.value";
    public static string PresentKey(int layer) => $"present.{layer}.key";
    public static string PresentValue(int layer) => $"present.{layer}.value";

    /// <summary>
    /// Builds the model for <paramref name="config"/>, fitting its output layer to <paramref name="corpus"/>;
    /// <paramref name="layersDone"/> gets the number of blocks built so far, then <see cref="TransformerConfig.Layers"/> + 1
    /// once the output layer is fitted.
    /// </summary>
    /// <param name="slots">
    /// True (what <c>models build</c> writes): the slot signature (<see cref="SlotGraph"/>: attention bias, logits rows,
    /// new keys/values only). False: Optimum's signature (<c>attention_mask</c>, logits for every position, present =
    /// past + new), as earlier builds wrote it.
    /// </param>
    /// <param name="slotWrites">
    /// With <paramref name="slots"/>: true (the default) writes the new keys/values into the bound past in the graph;
    /// false builds the slot signature as earlier builds wrote it (<c>present</c> = the new rows only).
    /// </param>
    public static byte[] Build(TransformerConfig config, ReadOnlySpan<byte> corpus, Action<int>? layersDone = null, bool slots = true, bool slotWrites = true)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Validate() is { } bad) throw new ArgumentException($"Invalid transformer shape: {bad}.", nameof(config));
        int e = config.Hidden, heads = config.Heads, d = config.HeadDim, v = config.VocabSize;
        ulong seed = config.Seed;
        var g = new OnnxGraphBuilder($"gpt2_{config.Preset}_{config.Layers}l", opset: 17);

        var ids = g.AddInput(InputIds, OnnxDataType.Int64, "batch_size", "sequence_length");
        var mask = slots ? "" : g.AddInput(AttentionMask, OnnxDataType.Int64, "batch_size", "total_sequence_length");
        var positions = g.AddInput(PositionIds, OnnxDataType.Int64, "batch_size", "sequence_length");
        var (slotBias, logitsIndices) = slots ? SlotGraph.AddInputs(g, slotWrites) : ("", "");
        for (int l = 0; l < config.Layers; l++)
        {
            g.AddInput(PastKey(l), OnnxDataType.Float, "batch_size", heads, "past_sequence_length", d);
            g.AddInput(PastValue(l), OnnxDataType.Float, "batch_size", heads, "past_sequence_length", d);
        }

        var wte = TransformerWeights.TokenEmbedding(config);
        string wteName = g.AddInitializer(OnnxTensor.FromFloats("transformer.wte.weight", wte, v, e));
        string wpe = g.AddInitializer(OnnxTensor.FromFloats("transformer.wpe.weight",
            TransformerWeights.Gaussian(seed, "wpe", config.MaxPositions * e, 0.05f), config.MaxPositions, e));
        string x = g.Op("Add", [g.Op("Gather", [wteName, ids], OnnxAttribute.Int("axis", 0)), g.Op("Gather", [wpe, positions], OnnxAttribute.Int("axis", 0))]);

        string bias = slots ? slotBias : MaskBias(g, ids, mask);
        string headShape = g.Constant("head_shape", [0L, 0L, heads, d], 4);
        string mergedShape = g.Constant("merged_shape", [0L, 0L, e], 3);
        string scale = slots ? "" : g.Constant("scale", [1f / MathF.Sqrt(d)]);
        string half = g.Constant("half", [0.5f]);
        string one = g.Constant("one", [1f]);
        string invSqrt2 = g.Constant("inv_sqrt2", [1f / MathF.Sqrt(2f)]);
        float inStd = 1f / MathF.Sqrt(e);
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"transformer.h.{l}.";
            string h = LayerNorm(g, x, p + "ln_1", e);
            string qkv = Linear(g, h, seed, p + "attn.c_attn", e, 3 * e, inStd);
            var split = g.Op("Split", [qkv, g.Constant("split", [(long)e, e, e], 3)], 3, "", OnnxAttribute.Int("axis", 2));
            string q = g.Op("Transpose", [g.Op("Reshape", [split[0], headShape])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            string k = g.Op("Transpose", [g.Op("Reshape", [split[1], headShape])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            string val = g.Op("Transpose", [g.Op("Reshape", [split[2], headShape])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            string ctx;
            if (slots)
            {
                ctx = g.Op("Transpose", [SlotGraph.Attend(g, q, k, val, PastKey(l), PastValue(l), PresentKey(l), PresentValue(l), bias, heads, heads, d, slotWrites)],
                    OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            }
            else
            {
                g.AddNode("Concat", [PastKey(l), k], [PresentKey(l)], "", OnnxAttribute.Int("axis", 2));
                g.AddNode("Concat", [PastValue(l), val], [PresentValue(l)], "", OnnxAttribute.Int("axis", 2));
                string kt = g.Op("Transpose", [PresentKey(l)], OnnxAttribute.IntList("perm", [0, 1, 3, 2]));
                string scores = g.Op("Add", [g.Op("Mul", [g.Op("MatMul", [q, kt]), scale]), bias]);
                string probs = g.Op("Softmax", [scores], OnnxAttribute.Int("axis", -1));
                ctx = g.Op("Transpose", [g.Op("MatMul", [probs, PresentValue(l)])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            }
            string attn = Linear(g, g.Op("Reshape", [ctx, mergedShape]), seed, p + "attn.c_proj", e, e, config.ResidualScale * inStd);
            x = g.Op("Add", [x, attn]);

            string h2 = LayerNorm(g, x, p + "ln_2", e);
            string fc = Linear(g, h2, seed, p + "mlp.c_fc", e, 4 * e, inStd);
            string gelu = g.Op("Mul", [g.Op("Mul", [fc, half]), g.Op("Add", [g.Op("Erf", [g.Op("Mul", [fc, invSqrt2])]), one])]);
            string mlp = Linear(g, gelu, seed, p + "mlp.c_proj", 4 * e, e, config.ResidualScale / MathF.Sqrt(4 * e));
            x = g.Op("Add", [x, mlp]);
            layersDone?.Invoke(l + 1);
        }

        string final = LayerNorm(g, x, "transformer.ln_f", e);
        var (head, headBias) = TransformerWeights.OutputLayer(config, wte, corpus);
        layersDone?.Invoke(config.Layers + 1);
        string w = g.AddInitializer(OnnxTensor.FromFloats("lm_head.weight", head, e, v));
        string b = g.AddInitializer(OnnxTensor.FromFloats("lm_head.bias", headBias, v));
        if (slots) final = SlotGraph.GatherRows(g, final, logitsIndices, e);
        g.AddNode("Add", [g.Op("MatMul", [final, w]), b], [Logits]);

        if (slots) g.AddOutput(Logits, OnnxDataType.Float, "logits_rows", v);
        else g.AddOutput(Logits, OnnxDataType.Float, "batch_size", "sequence_length", v);
        string presentLength = slots ? SlotGraph.PresentAxis(slotWrites) : "total_sequence_length";
        for (int l = 0; l < config.Layers; l++)
        {
            g.AddOutput(PresentKey(l), OnnxDataType.Float, "batch_size", heads, presentLength, d);
            g.AddOutput(PresentValue(l), OnnxDataType.Float, "batch_size", heads, presentLength, d);
        }
        return g.ToBytes();
    }

    /// <summary>Additive attention bias [batch, 1, seq, total]: 0 where allowed, −1e9 where masked or in the future.</summary>
    private static string MaskBias(OnnxGraphBuilder g, string ids, string mask)
    {
        string zero = g.Constant("zero_i", [0L], 1);
        string oneI = g.Constant("one_i", [1L], 1);
        string total = g.Op("Squeeze", [g.Op("Shape", [mask], OnnxAttribute.Int("start", 1))]);
        string seq = g.Op("Squeeze", [g.Op("Shape", [ids], OnnxAttribute.Int("start", 1))]);
        string scalarZero = g.Op("Squeeze", [zero]);
        string scalarOne = g.Op("Squeeze", [oneI]);
        string keys = g.Op("Range", [scalarZero, total, scalarOne]);                    // [T]
        string queries = g.Op("Range", [g.Op("Sub", [total, seq]), total, scalarOne]);  // [S]: past + i
        string causal = g.Op("LessOrEqual", [g.Op("Unsqueeze", [keys, zero]), g.Op("Unsqueeze", [queries, oneI])]); // [S,T]
        string valid = g.Op("Unsqueeze", [g.Op("Cast", [mask], OnnxAttribute.Int("to", 9)), g.Constant("axes12", [1L, 2L], 2)]); // [B,1,1,T]
        string allowed = g.Op("And", [causal, valid]);                                  // [B,1,S,T]
        return g.Op("Where", [allowed, g.Constant("open", [0f]), g.Constant("closed", [-1e9f])]);
    }

    private static string LayerNorm(OnnxGraphBuilder g, string x, string name, int e)
    {
        var gamma = new float[e];
        Array.Fill(gamma, 1f);
        string scale = g.AddInitializer(OnnxTensor.FromFloats(name + ".weight", gamma, e));
        string shift = g.AddInitializer(OnnxTensor.FromFloats(name + ".bias", new float[e], e));
        return g.Op("LayerNormalization", [x, scale, shift], OnnxAttribute.Int("axis", -1), OnnxAttribute.Float("epsilon", 1e-5f));
    }

    private static string Linear(OnnxGraphBuilder g, string x, ulong seed, string name, int inputs, int outputs, float std)
    {
        string w = g.AddInitializer(OnnxTensor.FromFloats(name + ".weight", TransformerWeights.Gaussian(seed, name, inputs * outputs, std), inputs, outputs));
        string b = g.AddInitializer(OnnxTensor.FromFloats(name + ".bias", new float[outputs], outputs));
        return g.Op("Add", [g.Op("MatMul", [x, w]), b]);
    }
}

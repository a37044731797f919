using IotDsd.Inference.Onnx;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Llama;

/// <summary>
/// Writes a Llama-architecture decoder (RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU, tied or
/// untied output layer) as ONNX (opset 17, standard operators only) in the signature <see cref="TransformerModel"/>
/// runs — Optimum's <c>text-generation-with-past</c>: inputs <c>input_ids</c>, <c>attention_mask</c>,
/// <c>position_ids</c>, <c>past_key_values.N.key/value</c> [batch, kv_heads, past, head_dim]; outputs <c>logits</c>
/// and <c>present.N.key/value</c>. The KV cache holds the key/value heads only (grouped-query attention repeats
/// each for its query heads inside the graph).
/// </summary>
/// <remarks>
/// Rotary embeddings follow llama2.c: each head's dimensions are rotated in adjacent pairs (2p, 2p+1) by the angle
/// <c>position · θ^(−2p/head_dim)</c> (Hugging Face's Llama instead rotates dimension p with p + head_dim/2, on
/// weights permuted to match; the two are the same model). The graph computes the angles from the positions it is
/// given, so a sequence may start anywhere below the context length.
/// </remarks>
public static class LlamaGraph
{
    /// <summary>Builds the ONNX model for <paramref name="checkpoint"/>.</summary>
    /// <param name="slots">True (what imports write): the slot signature (<see cref="SlotGraph"/>); false: Optimum's, as earlier imports wrote it.</param>
    public static byte[] Build(Llama2cCheckpoint checkpoint, string graphName = "llama", bool slots = true) =>
        Graph(checkpoint, graphName, slots).ToBytes();

    /// <summary>Bytes of weights past which <see cref="Save"/> writes them beside the graph (ONNX's 2 GiB protobuf limit, with room).</summary>
    public const long ExternalDataThresholdBytes = 1L << 30;

    /// <summary>The file <see cref="Save"/> writes large weights to, beside the graph.</summary>
    public const string ExternalDataFile = "model.onnx.data";

    /// <summary>
    /// Writes the ONNX model for <paramref name="checkpoint"/> to <paramref name="path"/>: in one file, or, when its
    /// weights pass <see cref="ExternalDataThresholdBytes"/>, with them in <see cref="ExternalDataFile"/> beside it.
    /// Returns the external data file's name, or null.
    /// </summary>
    public static string? Save(Llama2cCheckpoint checkpoint, string path, string graphName = "llama", long externalAbove = ExternalDataThresholdBytes)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var g = Graph(checkpoint, graphName, slots: true);
        if (Llama2cCheckpoint.ParameterCount(checkpoint.Shape) * sizeof(float) <= externalAbove)
        {
            g.Save(path);
            return null;
        }

        g.SaveWithExternalData(path, ExternalDataFile);
        return ExternalDataFile;
    }

    private static OnnxGraphBuilder Graph(Llama2cCheckpoint checkpoint, string graphName, bool slots)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var c = checkpoint.Shape;
        int e = c.Dim, heads = c.Heads, kvHeads = c.KvHeads, d = c.HeadDim, v = c.VocabSize, hidden = c.HiddenDim;
        var g = new OnnxGraphBuilder(graphName, opset: 17);

        var ids = g.AddInput(TransformerGraph.InputIds, OnnxDataType.Int64, "batch_size", "sequence_length");
        var mask = slots ? "" : g.AddInput(TransformerGraph.AttentionMask, OnnxDataType.Int64, "batch_size", "total_sequence_length");
        var positions = g.AddInput(TransformerGraph.PositionIds, OnnxDataType.Int64, "batch_size", "sequence_length");
        var (slotBias, logitsIndices) = slots ? SlotGraph.AddInputs(g) : ("", "");
        for (int l = 0; l < c.Layers; l++)
        {
            g.AddInput(TransformerGraph.PastKey(l), OnnxDataType.Float, "batch_size", kvHeads, "past_sequence_length", d);
            g.AddInput(TransformerGraph.PastValue(l), OnnxDataType.Float, "batch_size", kvHeads, "past_sequence_length", d);
        }

        string embedding = g.AddInitializer(OnnxTensor.FromFloats("model.embed_tokens.weight", checkpoint.TokenEmbedding, v, e));
        string x = g.Op("Gather", [embedding, ids], OnnxAttribute.Int("axis", 0));

        var (cos, sin) = RotaryTables(g, positions, c);
        string bias = slots ? slotBias : MaskBias(g, ids, mask);
        string scale = slots ? "" : g.Constant("scale", [1f / MathF.Sqrt(d)]);
        string eps = g.Constant("rms_eps", [c.RmsEpsilon]);
        string qPairs = g.Constant("q_pairs", [0L, 0L, heads, d / 2, 2], 5);
        string kPairs = g.Constant("k_pairs", [0L, 0L, kvHeads, d / 2, 2], 5);
        string qHeads = g.Constant("q_heads", [0L, 0L, heads, d], 4);
        string kvHeadShape = g.Constant("kv_heads", [0L, 0L, kvHeads, d], 4);
        string merged = g.Constant("merged", [0L, 0L, e], 3);
        int repeat = heads / kvHeads;
        string? expandShape = repeat > 1 && !slots ? g.Constant("gqa_repeat", [1L, 1L, repeat, 1L, 1L], 5) : null;
        string groupedShape = slots ? "" : g.Constant("gqa_shape", [0L, heads, -1L, d], 4);
        string axis2 = slots ? "" : g.Constant("axis2", [2L], 1);

        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            string h = RmsNorm(g, x, checkpoint.RmsAtt[l], p + "input_layernorm.weight", eps);
            string q = Linear(g, h, checkpoint.Wq[l], p + "self_attn.q_proj.weight", e, heads * d);
            string k = Linear(g, h, checkpoint.Wk[l], p + "self_attn.k_proj.weight", e, kvHeads * d);
            string val = Linear(g, h, checkpoint.Wv[l], p + "self_attn.v_proj.weight", e, kvHeads * d);
            q = Rotate(g, q, qPairs, qHeads, cos, sin);
            k = Rotate(g, k, kPairs, kvHeadShape, cos, sin);
            val = g.Op("Transpose", [g.Op("Reshape", [val, kvHeadShape])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            string ctx;
            if (slots)
            {
                ctx = g.Op("Transpose", [SlotGraph.Attend(g, q, k, val, TransformerGraph.PastKey(l), TransformerGraph.PastValue(l),
                    TransformerGraph.PresentKey(l), TransformerGraph.PresentValue(l), bias, heads, kvHeads, d)], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            }
            else
            {
                g.AddNode("Concat", [TransformerGraph.PastKey(l), k], [TransformerGraph.PresentKey(l)], "", OnnxAttribute.Int("axis", 2));
                g.AddNode("Concat", [TransformerGraph.PastValue(l), val], [TransformerGraph.PresentValue(l)], "", OnnxAttribute.Int("axis", 2));
                string keys = Repeat(g, TransformerGraph.PresentKey(l), expandShape, groupedShape, axis2);
                string values = Repeat(g, TransformerGraph.PresentValue(l), expandShape, groupedShape, axis2);
                string kt = g.Op("Transpose", [keys], OnnxAttribute.IntList("perm", [0, 1, 3, 2]));
                string scores = g.Op("Add", [g.Op("Mul", [g.Op("MatMul", [q, kt]), scale]), bias]);
                string probs = g.Op("Softmax", [scores], OnnxAttribute.Int("axis", -1));
                ctx = g.Op("Transpose", [g.Op("MatMul", [probs, values])], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
            }
            x = g.Op("Add", [x, Linear(g, g.Op("Reshape", [ctx, merged]), checkpoint.Wo[l], p + "self_attn.o_proj.weight", heads * d, e)]);

            string h2 = RmsNorm(g, x, checkpoint.RmsFfn[l], p + "post_attention_layernorm.weight", eps);
            string gate = Linear(g, h2, checkpoint.W1[l], p + "mlp.gate_proj.weight", e, hidden);
            string up = Linear(g, h2, checkpoint.W3[l], p + "mlp.up_proj.weight", e, hidden);
            string swiglu = g.Op("Mul", [g.Op("Mul", [gate, g.Op("Sigmoid", [gate])]), up]);
            x = g.Op("Add", [x, Linear(g, swiglu, checkpoint.W2[l], p + "mlp.down_proj.weight", hidden, e)]);
        }

        string final = RmsNorm(g, x, checkpoint.RmsFinal, "model.norm.weight", eps);
        string head = g.AddInitializer(OnnxTensor.FromFloats("lm_head.weight", Transpose(checkpoint.Classifier, v, e), e, v));
        if (slots) final = SlotGraph.GatherRows(g, final, logitsIndices, e);
        g.AddNode("MatMul", [final, head], [TransformerGraph.Logits]);

        if (slots) g.AddOutput(TransformerGraph.Logits, OnnxDataType.Float, "logits_rows", v);
        else g.AddOutput(TransformerGraph.Logits, OnnxDataType.Float, "batch_size", "sequence_length", v);
        string presentLength = slots ? SlotGraph.PresentAxis(writes: true) : "total_sequence_length";
        for (int l = 0; l < c.Layers; l++)
        {
            g.AddOutput(TransformerGraph.PresentKey(l), OnnxDataType.Float, "batch_size", kvHeads, presentLength, d);
            g.AddOutput(TransformerGraph.PresentValue(l), OnnxDataType.Float, "batch_size", kvHeads, presentLength, d);
        }

        return g;
    }

    /// <summary>cos and sin of each position's angles, [batch, seq, 1, head_dim/2, 1], gathered from tables over the context.</summary>
    private static (string Cos, string Sin) RotaryTables(OnnxGraphBuilder g, string positions, LlamaShape c)
    {
        int half = c.HeadDim / 2;
        var cos = new float[c.SeqLen * half];
        var sin = new float[c.SeqLen * half];
        for (int pos = 0; pos < c.SeqLen; pos++)
        {
            for (int p = 0; p < half; p++)
            {
                // As llama2.c computes it, in float: freq = 1 / θ^(2p / head_dim), angle = pos · freq.
                float freq = 1f / MathF.Pow(c.RopeTheta, 2 * p / (float)c.HeadDim);
                float angle = pos * freq;
                cos[pos * half + p] = MathF.Cos(angle);
                sin[pos * half + p] = MathF.Sin(angle);
            }
        }

        string axes = g.Constant("rope_axes", [2L, 4L], 2);
        string cosTable = g.AddInitializer(OnnxTensor.FromFloats("rope.cos", cos, c.SeqLen, half));
        string sinTable = g.AddInitializer(OnnxTensor.FromFloats("rope.sin", sin, c.SeqLen, half));
        return (g.Op("Unsqueeze", [g.Op("Gather", [cosTable, positions], OnnxAttribute.Int("axis", 0)), axes]),
                g.Op("Unsqueeze", [g.Op("Gather", [sinTable, positions], OnnxAttribute.Int("axis", 0)), axes]));
    }

    /// <summary>Rotates [batch, seq, heads·head_dim] in adjacent pairs; returns [batch, heads, seq, head_dim].</summary>
    private static string Rotate(OnnxGraphBuilder g, string x, string pairShape, string headShape, string cos, string sin)
    {
        var parts = g.Op("Split", [g.Op("Reshape", [x, pairShape]), g.Constant("pair_split", [1L, 1L], 2)], 2, "", OnnxAttribute.Int("axis", 4));
        string x0 = parts[0], x1 = parts[1];
        string r0 = g.Op("Sub", [g.Op("Mul", [x0, cos]), g.Op("Mul", [x1, sin])]);
        string r1 = g.Op("Add", [g.Op("Mul", [x0, sin]), g.Op("Mul", [x1, cos])]);
        string rotated = g.Op("Reshape", [g.Op("Concat", [r0, r1], OnnxAttribute.Int("axis", 4)), headShape]);
        return g.Op("Transpose", [rotated], OnnxAttribute.IntList("perm", [0, 2, 1, 3]));
    }

    /// <summary>[batch, kv_heads, total, head_dim] → [batch, heads, total, head_dim], each key/value head repeated for its query heads.</summary>
    private static string Repeat(OnnxGraphBuilder g, string kv, string? expandShape, string groupedShape, string axis2) =>
        expandShape is null ? kv : g.Op("Reshape", [g.Op("Expand", [g.Op("Unsqueeze", [kv, axis2]), expandShape]), groupedShape]);

    private static string RmsNorm(OnnxGraphBuilder g, string x, float[] weight, string name, string eps)
    {
        string w = g.AddInitializer(OnnxTensor.FromFloats(name, weight, weight.Length));
        string meanSquare = g.Op("ReduceMean", [g.Op("Mul", [x, x])], OnnxAttribute.IntList("axes", [-1]), OnnxAttribute.Int("keepdims", 1));
        string norm = g.Op("Div", [x, g.Op("Sqrt", [g.Op("Add", [meanSquare, eps])])]);
        return g.Op("Mul", [norm, w]);
    }

    /// <summary>x [.., inputs] times a llama2.c matrix stored [outputs, inputs].</summary>
    private static string Linear(OnnxGraphBuilder g, string x, float[] outIn, string name, int inputs, int outputs) =>
        g.Op("MatMul", [x, g.AddInitializer(OnnxTensor.FromFloats(name, Transpose(outIn, outputs, inputs), inputs, outputs))]);

    private static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int col = 0; col < cols; col++) t[col * rows + r] = m[r * cols + col];
        }
        return t;
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
        string keys = g.Op("Range", [scalarZero, total, scalarOne]);
        string queries = g.Op("Range", [g.Op("Sub", [total, seq]), total, scalarOne]);
        string causal = g.Op("LessOrEqual", [g.Op("Unsqueeze", [keys, zero]), g.Op("Unsqueeze", [queries, oneI])]);
        string valid = g.Op("Unsqueeze", [g.Op("Cast", [mask], OnnxAttribute.Int("to", 9)), g.Constant("axes12", [1L, 2L], 2)]);
        string allowed = g.Op("And", [causal, valid]);
        return g.Op("Where", [allowed, g.Constant("open", [0f]), g.Constant("closed", [-1e9f])]);
    }
}

using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// The parts of the slot signature (<see cref="KvLayout.Slots"/>) that <see cref="TransformerGraph"/> and
/// <see cref="Llama.LlamaGraph"/> share. Inputs: <c>input_ids</c> and <c>position_ids</c> [batch, seq] (int64),
/// <c>attention_bias</c> [batch, 1, seq, past+seq] (float, added to the attention scores: 0 where a query may look,
/// −1e9 where it may not — so the runner decides causality, padding and token trees), <c>logits_indices</c> [rows]
/// (int64 positions in the flattened batch × seq whose logits are wanted) and <c>past_key_values.N.key/value</c>
/// [batch, kv_heads, past, head_dim], read in place. Outputs: <c>logits</c> [rows, vocab] and
/// <c>present.N.key/value</c> [batch, kv_heads, seq, head_dim] holding the new tokens' keys and values only.
/// </summary>
/// <remarks>
/// Attention never copies the past: the scores against the past and against the new tokens are two MatMuls
/// (<c>q·Kᵀ</c>; ONNX Runtime fuses the transpose into the MatMul), joined, softmaxed, split, and the two halves
/// multiply the past and new values. Grouped-query attention folds the query heads of one key/value head into the
/// query axis ([batch, kv_heads, group·seq, head_dim]) instead of repeating the cache. The output layer runs only on
/// the rows <c>logits_indices</c> gathers.
/// </remarks>
public static class SlotGraph
{
    public const string AttentionBias = "attention_bias";
    public const string LogitsIndices = "logits_indices";

    /// <summary>Declares <c>attention_bias</c> and <c>logits_indices</c>; returns their names.</summary>
    public static (string Bias, string Indices) AddInputs(OnnxGraphBuilder g)
    {
        ArgumentNullException.ThrowIfNull(g);
        var bias = g.AddInput(AttentionBias, OnnxDataType.Float, "batch_size", 1, "sequence_length", "total_sequence_length");
        var indices = g.AddInput(LogitsIndices, OnnxDataType.Int64, "logits_rows");
        return (bias, indices);
    }

    /// <summary>
    /// Attention of <paramref name="q"/> [batch, heads, seq, d] over the past (graph inputs <paramref name="pastKey"/>,
    /// <paramref name="pastValue"/>) and the new <paramref name="key"/>/<paramref name="value"/> [batch, kv_heads, seq, d],
    /// which are also written to the outputs <paramref name="presentKey"/>/<paramref name="presentValue"/>.
    /// Returns the context [batch, heads, seq, d].
    /// </summary>
    public static string Attend(OnnxGraphBuilder g, string q, string key, string value, string pastKey, string pastValue,
        string presentKey, string presentValue, string bias, int heads, int kvHeads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(g);
        g.AddNode("Identity", [key], [presentKey]);
        g.AddNode("Identity", [value], [presentValue]);
        string scale = g.Constant("slot_scale", [1f / MathF.Sqrt(headDim)]);
        string grouped = g.Constant("slot_grouped", [0L, kvHeads, -1L, headDim], 4);
        string byHead = g.Constant("slot_by_head", [0L, heads, -1L, 0L], 4);
        string byKvHead = g.Constant("slot_by_kv_head", [0L, kvHeads, -1L, 0L], 4);
        string perHead = g.Constant("slot_per_head", [0L, heads, -1L, headDim], 4);
        var transposeLast = OnnxAttribute.IntList("perm", [0, 1, 3, 2]);

        string qg = g.Op("Reshape", [q, grouped]); // [b, kv, group·s, d]
        string pastScores = g.Op("MatMul", [qg, g.Op("Transpose", [pastKey], transposeLast)]);
        string newScores = g.Op("MatMul", [qg, g.Op("Transpose", [key], transposeLast)]);
        string scores = g.Op("Reshape", [g.Op("Concat", [pastScores, newScores], OnnxAttribute.Int("axis", 3)), byHead]); // [b, h, s, T]
        string probs = g.Op("Softmax", [g.Op("Add", [g.Op("Mul", [scores, scale]), bias])], OnnxAttribute.Int("axis", -1));
        string sizes = g.Op("Concat", [g.Op("Shape", [pastKey], OnnxAttribute.Int("start", 2), OnnxAttribute.Int("end", 3)),
            g.Op("Shape", [key], OnnxAttribute.Int("start", 2), OnnxAttribute.Int("end", 3))], OnnxAttribute.Int("axis", 0));
        var halves = g.Op("Split", [g.Op("Reshape", [probs, byKvHead]), sizes], 2, "", OnnxAttribute.Int("axis", 3));
        string ctx = g.Op("Add", [g.Op("MatMul", [halves[0], pastValue]), g.Op("MatMul", [halves[1], value])]);
        return g.Op("Reshape", [ctx, perHead]);
    }

    /// <summary>The rows of <paramref name="hidden"/> [batch, seq, width] that <paramref name="indices"/> names, as [rows, width].</summary>
    public static string GatherRows(OnnxGraphBuilder g, string hidden, string indices, int width)
    {
        ArgumentNullException.ThrowIfNull(g);
        string flat = g.Op("Reshape", [hidden, g.Constant("slot_flat", [-1L, width], 2)]);
        return g.Op("Gather", [flat, indices], OnnxAttribute.Int("axis", 0));
    }
}

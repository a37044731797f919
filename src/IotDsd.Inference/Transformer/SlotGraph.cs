using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// The parts of the slot signature (<see cref="KvLayout.Slots"/>) that <see cref="TransformerGraph"/> and
/// <see cref="Llama.LlamaGraph"/> share. Inputs: <c>input_ids</c> and <c>position_ids</c> [batch, seq] (int64),
/// <c>attention_bias</c> [batch, 1, seq, past+seq] (float, added to the attention scores: 0 where a query may look,
/// −1e9 where it may not — so the runner decides causality, padding and token trees), <c>logits_indices</c> [rows]
/// (int64 positions in the flattened batch × seq whose logits are wanted) and <c>past_key_values.N.key/value</c>
/// [batch, kv_heads, past, head_dim], read in place, and <c>kv_write_from</c> [writes] / <c>kv_write_to</c>
/// [writes, 3] (int64: which new key/value rows go where). Outputs: <c>logits</c> [rows, vocab] and
/// <c>present.N.key/value</c> [batch, kv_heads, past, head_dim]: the past with the new tokens' keys and values written
/// in, which the runner binds to the very memory it bound the past to, so the cache is updated in place where it lives
/// (host or GPU) and never crosses to the host.
/// </summary>
/// <remarks>
/// Attention never copies the past: the scores against the past and against the new tokens are two MatMuls
/// (<c>q·Kᵀ</c>; ONNX Runtime fuses the transpose into the MatMul), joined, softmaxed, split, and the two halves
/// multiply the past and new values. Grouped-query attention folds the query heads of one key/value head into the
/// query axis ([batch, kv_heads, group·seq, head_dim]) instead of repeating the cache. The output layer runs only on
/// the rows <c>logits_indices</c> gathers. The write is a <c>ScatterND</c> of the new rows (flattened [batch · kv_heads ·
/// seq, head_dim], picked by <c>kv_write_from</c>) to (row, head, position) triples: ONNX Runtime's CPU and CUDA kernels
/// skip their copy of the input when the output is the same buffer, so only the new rows move. The positions written lie
/// past each row's length, which the bias keeps closed in this pass, so reading the past and writing it cannot race.
/// Graphs without the two write inputs (built before them) return the new rows only, as [batch, kv_heads, seq,
/// head_dim], and the runner writes them in with <see cref="KvPoolOps"/>.
/// </remarks>
public static class SlotGraph
{
    public const string AttentionBias = "attention_bias";
    public const string LogitsIndices = "logits_indices";
    public const string KvWriteFrom = "kv_write_from";
    public const string KvWriteTo = "kv_write_to";

    /// <summary>
    /// Declares <c>attention_bias</c>, <c>logits_indices</c> and, when <paramref name="writes"/> (the default; false
    /// builds the signature of earlier builds, whose <c>present</c> holds the new rows only), <c>kv_write_from</c> and
    /// <c>kv_write_to</c>.
    /// </summary>
    public static (string Bias, string Indices) AddInputs(OnnxGraphBuilder g, bool writes = true)
    {
        ArgumentNullException.ThrowIfNull(g);
        var bias = g.AddInput(AttentionBias, OnnxDataType.Float, "batch_size", 1, "sequence_length", "total_sequence_length");
        var indices = g.AddInput(LogitsIndices, OnnxDataType.Int64, "logits_rows");
        if (writes)
        {
            g.AddInput(KvWriteFrom, OnnxDataType.Int64, "kv_writes");
            g.AddInput(KvWriteTo, OnnxDataType.Int64, "kv_writes", 3);
        }
        return (bias, indices);
    }

    /// <summary>The length axis of <c>present</c>: the past's when the graph writes it in, the new tokens' otherwise.</summary>
    public static string PresentAxis(bool writes) => writes ? "past_sequence_length" : "sequence_length";

    /// <summary>
    /// <paramref name="cache"/> [batch, kv_heads, past, d] with the rows of <paramref name="fresh"/> [batch, kv_heads, seq, d]
    /// that <c>kv_write_from</c> picks written at <c>kv_write_to</c>, into <paramref name="output"/>.
    /// </summary>
    internal static void WriteRows(OnnxGraphBuilder g, string cache, string fresh, string from, string to, string output, int headDim)
    {
        string rows = g.Op("Reshape", [fresh, g.Constant("kv_rows", [-1L, headDim], 2)]);
        g.AddNode("ScatterND", [cache, to, g.Op("Gather", [rows, from], OnnxAttribute.Int("axis", 0))], [output]);
    }

    /// <summary>
    /// Attention of <paramref name="q"/> [batch, heads, seq, d] over the past (graph inputs <paramref name="pastKey"/>,
    /// <paramref name="pastValue"/>) and the new <paramref name="key"/>/<paramref name="value"/> [batch, kv_heads, seq, d],
    /// which are also written into the past, in place, as the outputs <paramref name="presentKey"/>/<paramref name="presentValue"/>.
    /// Returns the context [batch, heads, seq, d].
    /// </summary>
    public static string Attend(OnnxGraphBuilder g, string q, string key, string value, string pastKey, string pastValue,
        string presentKey, string presentValue, string bias, int heads, int kvHeads, int headDim, bool writes = true)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (writes)
        {
            WriteRows(g, pastKey, key, KvWriteFrom, KvWriteTo, presentKey, headDim);
            WriteRows(g, pastValue, value, KvWriteFrom, KvWriteTo, presentValue, headDim);
        }
        else
        {
            g.AddNode("Identity", [key], [presentKey]);
            g.AddNode("Identity", [value], [presentValue]);
        }
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

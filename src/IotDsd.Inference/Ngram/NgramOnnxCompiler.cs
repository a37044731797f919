using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Ngram;

/// <summary>
/// Compiles a <see cref="KneserNeyModel"/> into an ONNX graph:
/// input <c>context</c> int64 [N, order-1] (the last order-1 tokens, newest last, left-padded with 256),
/// output <c>logits</c> float [N, V] = natural-log probabilities, V = the model's <see cref="KneserNeyModel.Live"/>
/// tokens (256 for a byte model; padding token V, key base V + 1).
/// </summary>
/// <remarks>
/// Per order k the graph computes the context key (as <see cref="KneserNeyModel"/> does) and interpolates
/// <c>P_k = term_k + λ_k · P_{k-1}</c> upward from the dense unigram; finally <c>Log</c>. The terms and λ of an
/// order come from one of two layouts:
/// <list type="bullet">
/// <item><b>dense</b> (orders with at most <see cref="DenseContextLimit"/> seen contexts): an <c>ai.onnx.ml</c>
/// LabelEncoder maps the context key to a row (0 = unseen) of a [contexts+1, 256] term table and a [contexts+1, 1]
/// λ table, read with Gather — one hash lookup per row;</item>
/// <item><b>hashed</b>: LabelEncoder on the 256 keys <c>key·257 + w</c> (default 0) for the terms and on the
/// context key (default 1: unseen, back off fully) for λ — 257 hash lookups per row, but no dense table.</item>
/// </list>
/// Both give identical values.
/// </remarks>
public static class NgramOnnxCompiler
{
    public const string InputName = "context";
    public const string OutputName = "logits";

    /// <summary>Orders with at most this many seen contexts use a dense term table (≤ 4 MiB each).</summary>
    public const int DenseContextLimit = 4096;

    public static byte[] Compile(KneserNeyModel model, string graphName = "kneser_ney", int denseContextLimit = DenseContextLimit)
    {
        ArgumentNullException.ThrowIfNull(model);
        int order = model.Order;
        int width = order - 1;
        var g = new OnnxGraphBuilder(graphName, opset: 17).UseOpset(OnnxGraphBuilder.MlDomain, 3);

        var context = g.AddInput(InputName, OnnxDataType.Int64, "N", width);

        int live = model.Live;
        var unigram = new float[live];
        for (int i = 0; i < unigram.Length; i++) unigram[i] = (float)model.Unigram[i];
        string p = g.Constant("unigram", unigram, 1, live);

        // Only graphs with a hashed (LabelEncoder) order need these; unused initializers make ONNX Runtime warn.
        string? vocabIds = null;
        string? keyBase = null;
        string axis1 = g.Constant("axis1", [1L], 1);
        string flat = g.Constant("flat_shape", [-1L], 1);

        string? ctxKey = null;
        long weight = 1;
        for (int k = 2; k <= order; k++)
        {
            int col = width - (k - 1); // column of the token k-1 back
            string starts = g.Constant("col_start", [(long)col], 1);
            string ends = g.Constant("col_end", [(long)col + 1], 1);
            string column = g.Op("Slice", [context, starts, ends, axis1]); // [N,1]
            if (ctxKey is null)
            {
                ctxKey = column;
            }
            else
            {
                string w = g.Constant("weight", [weight]);
                ctxKey = g.Op("Add", [ctxKey, g.Op("Mul", [column, w])]);
            }
            weight *= model.Base;

            var lambdas = model.Lambdas(k);
            var terms = model.Terms(k);
            if (lambdas.Count <= denseContextLimit)
            {
                var (term, lambda) = DenseLookup(g, ctxKey, flat, lambdas, terms, k, live);
                p = g.Op("Add", [term, g.Op("Mul", [lambda, p])]);
            }
            else
            {
                if (vocabIds is null)
                {
                    var vocab = new long[live];
                    for (int i = 0; i < vocab.Length; i++) vocab[i] = i;
                    vocabIds = g.Constant("vocab", vocab, 1, live);
                    keyBase = g.Constant("key_base", [model.Base]);
                }

                string fullKey = g.Op("Add", [g.Op("Mul", [ctxKey, keyBase!]), vocabIds]); // [N,256]
                string lambda = LabelEncoder(g, ctxKey, lambdas, 1f, $"lambda_{k}");
                string backoff = g.Op("Mul", [lambda, p]);
                p = terms.Count == 0 ? backoff : g.Op("Add", [LabelEncoder(g, fullKey, terms, 0f, $"term_{k}"), backoff]);
            }
        }

        if (order == 1 || ctxKey is null) throw new InvalidOperationException("Order must be at least 2.");
        g.AddNode("Log", [p], [OutputName]);
        g.AddOutput(OutputName, OnnxDataType.Float, "N", live);
        return g.ToBytes();
    }

    /// <summary>Context key → row index (0 = unseen) → Gather from dense term and λ tables.</summary>
    private static (string Term, string Lambda) DenseLookup(OnnxGraphBuilder g, string ctxKey, string flatShape,
        IReadOnlyDictionary<long, double> lambdas, IReadOnlyDictionary<long, double> terms, int k, int v)
    {
        long keyBase = v + 1L;
        var contexts = lambdas.Keys.ToArray();
        Array.Sort(contexts);
        var rowOf = new long[contexts.Length];
        var termTable = new float[(contexts.Length + 1) * v];
        var lambdaTable = new float[contexts.Length + 1];
        lambdaTable[0] = 1f; // row 0: unseen context, term 0, back off fully
        for (int i = 0; i < contexts.Length; i++)
        {
            rowOf[i] = i + 1;
            lambdaTable[i + 1] = (float)lambdas[contexts[i]];
        }
        var index = new Dictionary<long, int>(contexts.Length);
        for (int i = 0; i < contexts.Length; i++) index[contexts[i]] = i + 1;
        foreach (var (key, value) in terms)
            termTable[index[key / keyBase] * v + (int)(key % keyBase)] = (float)value;

        string row = g.UniqueName($"ctx_row_{k}");
        g.AddNode("LabelEncoder", [ctxKey], [row], OnnxGraphBuilder.MlDomain,
            OnnxAttribute.IntList("keys_int64s", contexts),
            OnnxAttribute.IntList("values_int64s", rowOf),
            OnnxAttribute.Int("default_int64", 0));
        string rows = g.Op("Reshape", [row, flatShape]); // [N]
        string termT = g.AddInitializer(OnnxTensor.FromFloats(g.UniqueName($"terms_{k}"), termTable, contexts.Length + 1, v));
        string lambdaT = g.AddInitializer(OnnxTensor.FromFloats(g.UniqueName($"lambdas_{k}"), lambdaTable, contexts.Length + 1, 1));
        string term = g.Op("Gather", [termT, rows], OnnxAttribute.Int("axis", 0));     // [N,256]
        string lambda = g.Op("Gather", [lambdaT, rows], OnnxAttribute.Int("axis", 0)); // [N,1]
        return (term, lambda);
    }

    private static string LabelEncoder(OnnxGraphBuilder g, string input, IReadOnlyDictionary<long, double> table, float fallback, string name)
    {
        var keys = new long[table.Count];
        int i = 0;
        foreach (var key in table.Keys) keys[i++] = key;
        Array.Sort(keys);
        var values = new float[keys.Length];
        for (i = 0; i < keys.Length; i++) values[i] = (float)table[keys[i]];
        var output = g.UniqueName(name);
        g.AddNode("LabelEncoder", [input], [output], OnnxGraphBuilder.MlDomain,
            OnnxAttribute.IntList("keys_int64s", keys),
            OnnxAttribute.FloatList("values_floats", values),
            OnnxAttribute.Float("default_float", fallback));
        return output;
    }
}

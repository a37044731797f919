using IotDsd.Core.Sampling;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Deterministic weights for <see cref="TransformerGraph"/>. Every tensor is drawn from its own stream keyed by
/// (seed, tensor name), so a draft that keeps the first layers of a target gets exactly the target's weights for them.
/// </summary>
/// <remarks>
/// The token embedding and the output layer are fitted to the byte-bigram statistics of a corpus: with the output
/// layer solved by ridge regression so that <c>LayerNorm(wte[x]) · lm_head ≈ log P(next | x)</c>, the model predicts
/// like a bigram model, and each block (random attention and MLP, scaled by <see cref="TransformerConfig.ResidualScale"/>)
/// perturbs that prediction depending on the context. A draft with fewer blocks then agrees with its target often but
/// not always — a realistic acceptance rate without training.
/// </remarks>
public static class TransformerWeights
{
    /// <summary>Logit bias of padded (non-byte) token ids: their probability underflows to exactly zero.</summary>
    public const float PaddedLogit = -1e4f;

    /// <summary>Gaussian values with standard deviation <paramref name="std"/> from the stream of <paramref name="name"/>.</summary>
    public static float[] Gaussian(ulong seed, string name, int count, float std)
    {
        var values = new float[count];
        ulong state = DeterministicRandom.Mix(seed ^ StableHash(name));
        for (int i = 0; i < count; i += 2)
        {
            double u1 = ((Next(ref state) >> 11) + 1) * (1.0 / 9007199254740993.0); // (0, 1]
            double u2 = (Next(ref state) >> 11) * (1.0 / 9007199254740992.0);
            double r = Math.Sqrt(-2.0 * Math.Log(u1)) * std;
            values[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < count) values[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return values;
    }

    /// <summary>Token embedding [vocab, hidden]: unit Gaussian rows for the bytes, zero rows for padded ids.</summary>
    public static float[] TokenEmbedding(TransformerConfig c)
    {
        var live = Gaussian(c.Seed, "wte", TransformerConfig.LiveTokens * c.Hidden, 1f);
        var wte = new float[(long)c.VocabSize * c.Hidden];
        live.CopyTo(wte, 0);
        return wte;
    }

    /// <summary>
    /// Output layer [hidden, vocab] and bias [vocab]: ridge regression of the centred bigram log-probabilities of
    /// <paramref name="corpus"/> on the layer-normalized byte embeddings.
    /// </summary>
    public static (float[] Weight, float[] Bias) OutputLayer(TransformerConfig c, float[] wte, ReadOnlySpan<byte> corpus)
    {
        const int n = TransformerConfig.LiveTokens;
        int h = c.Hidden;
        var targets = BigramLogits(corpus); // [n, n]
        var e = new double[n * h];
        for (int t = 0; t < n; t++) LayerNorm(wte.AsSpan(t * h, h), e.AsSpan(t * h, h));

        // G = E Eᵀ + λI (n×n, SPD); W = Eᵀ G⁻¹ B.
        var g = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double s = 0;
                for (int k = 0; k < h; k++) s += e[i * h + k] * e[j * h + k];
                g[i * n + j] = g[j * n + i] = s;
            }
        }
        double lambda = 1e-3 * h;
        for (int i = 0; i < n; i++) g[i * n + i] += lambda;
        var solved = CholeskySolve(g, targets, n); // G⁻¹ B, [n, n]

        var weight = new float[(long)h * c.VocabSize];
        for (int k = 0; k < h; k++)
        {
            for (int v = 0; v < n; v++)
            {
                double s = 0;
                for (int t = 0; t < n; t++) s += e[t * h + k] * solved[t * n + v];
                weight[(long)k * c.VocabSize + v] = (float)s;
            }
        }
        var bias = new float[c.VocabSize];
        for (int v = n; v < bias.Length; v++) bias[v] = PaddedLogit;
        return (weight, bias);
    }

    /// <summary>Centred log P(next | current) over bytes, add-0.1 smoothed, as an n×n row-major matrix.</summary>
    internal static double[] BigramLogits(ReadOnlySpan<byte> corpus)
    {
        const int n = TransformerConfig.LiveTokens;
        var counts = new double[n * n];
        for (int i = 1; i < corpus.Length; i++) counts[corpus[i - 1] * n + corpus[i]] += 1;
        var logits = new double[n * n];
        for (int a = 0; a < n; a++)
        {
            double total = 0;
            for (int b = 0; b < n; b++) total += counts[a * n + b] + 0.1;
            double mean = 0;
            for (int b = 0; b < n; b++) mean += logits[a * n + b] = Math.Log((counts[a * n + b] + 0.1) / total);
            mean /= n;
            for (int b = 0; b < n; b++) logits[a * n + b] -= mean;
        }
        return logits;
    }

    private static void LayerNorm(ReadOnlySpan<float> x, Span<double> y)
    {
        double mean = 0, variance = 0;
        foreach (var v in x) mean += v;
        mean /= x.Length;
        foreach (var v in x) variance += (v - mean) * (v - mean);
        double inv = 1.0 / Math.Sqrt(variance / x.Length + 1e-5);
        for (int i = 0; i < x.Length; i++) y[i] = (x[i] - mean) * inv;
    }

    /// <summary>Solves A X = B for SPD A (n×n) and B (n×m, row-major); returns X.</summary>
    private static double[] CholeskySolve(double[] a, double[] b, int n)
    {
        int m = b.Length / n;
        var l = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
                l[i * n + j] = i == j ? Math.Sqrt(s) : s / l[j * n + j];
            }
        }
        var x = (double[])b.Clone();
        for (int col = 0; col < m; col++)
        {
            for (int i = 0; i < n; i++) // L y = b
            {
                double s = x[i * m + col];
                for (int k = 0; k < i; k++) s -= l[i * n + k] * x[k * m + col];
                x[i * m + col] = s / l[i * n + i];
            }
            for (int i = n - 1; i >= 0; i--) // Lᵀ x = y
            {
                double s = x[i * m + col];
                for (int k = i + 1; k < n; k++) s -= l[k * n + i] * x[k * m + col];
                x[i * m + col] = s / l[i * n + i];
            }
        }
        return x;
    }

    private static ulong Next(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        return DeterministicRandom.Mix(state);
    }

    private static ulong StableHash(string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (char ch in name) h = (h ^ ch) * 1099511628211UL;
        return h;
    }
}

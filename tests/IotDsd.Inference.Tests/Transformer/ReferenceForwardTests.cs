using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>
/// The ONNX graph computes GPT-2: its logits match a plain managed forward pass (double precision, no KV cache)
/// over the same deterministic weights.
/// </summary>
[Collection(TinyPairCollection.Name)]
public sealed class ReferenceForwardTests(TinyPairFixture pair)
{
    [Theory]
    [InlineData("target")]
    [InlineData("draft")]
    public void Onnx_BuiltModel_MatchesManagedGpt2Forward(string role)
    {
        var config = TransformerConfig.ForPreset("tiny", role, TinyPairFixture.Seed);
        int[] tokens = [.. "Hello, world. Q:\tA"u8.ToArray().Select(b => (int)b)];
        var expected = Reference(config, tokens, DefaultModels.Corpus.ToArray());

        using var model = ModelDirectory.Load(role == "draft" ? pair.DraftDir : pair.TargetDir);
        using var seq = model.CreateSequence();
        var actual = new float[tokens.Length * model.VocabSize];
        seq.Feed(tokens, actual);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.True(worst < 2e-3, $"max |ONNX − reference| = {worst}");
    }

    private static double[] Reference(TransformerConfig c, int[] tokens, byte[] corpus)
    {
        int e = c.Hidden, n = tokens.Length, heads = c.Heads, d = c.HeadDim, v = c.VocabSize;
        float inStd = 1f / MathF.Sqrt(e);
        var wte = TransformerWeights.TokenEmbedding(c);
        var wpe = TransformerWeights.Gaussian(c.Seed, "wpe", c.MaxPositions * e, 0.05f);
        var x = new double[n, e];
        for (int t = 0; t < n; t++)
            for (int k = 0; k < e; k++) x[t, k] = wte[tokens[t] * e + k] + wpe[t * e + k];

        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"transformer.h.{l}.";
            var qkv = MatMul(LayerNorm(x), TransformerWeights.Gaussian(c.Seed, p + "attn.c_attn", e * 3 * e, inStd), 3 * e);
            var ctx = new double[n, e];
            for (int h = 0; h < heads; h++)
            {
                for (int i = 0; i < n; i++)
                {
                    var scores = new double[i + 1];
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        double s = 0;
                        for (int k = 0; k < d; k++) s += qkv[i, h * d + k] * qkv[j, e + h * d + k];
                        scores[j] = s / Math.Sqrt(d);
                        max = Math.Max(max, scores[j]);
                    }
                    for (int j = 0; j <= i; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j <= i; j++)
                        for (int k = 0; k < d; k++) ctx[i, h * d + k] += scores[j] / sum * qkv[j, 2 * e + h * d + k];
                }
            }
            Add(x, MatMul(ctx, TransformerWeights.Gaussian(c.Seed, p + "attn.c_proj", e * e, c.ResidualScale * inStd), e));
            var fc = MatMul(LayerNorm(x), TransformerWeights.Gaussian(c.Seed, p + "mlp.c_fc", e * 4 * e, inStd), 4 * e);
            for (int i = 0; i < n; i++)
                for (int k = 0; k < 4 * e; k++) fc[i, k] = 0.5 * fc[i, k] * (1 + Erf(fc[i, k] / Math.Sqrt(2)));
            Add(x, MatMul(fc, TransformerWeights.Gaussian(c.Seed, p + "mlp.c_proj", 4 * e * e, c.ResidualScale / MathF.Sqrt(4 * e)), e));
        }

        var (head, bias) = TransformerWeights.OutputLayer(c, wte, corpus);
        var logits = MatMul(LayerNorm(x), head, v);
        var flat = new double[n * v];
        for (int t = 0; t < n; t++)
            for (int k = 0; k < v; k++) flat[t * v + k] = logits[t, k] + bias[k];
        return flat;
    }

    private static double[,] LayerNorm(double[,] x)
    {
        int n = x.GetLength(0), e = x.GetLength(1);
        var y = new double[n, e];
        for (int t = 0; t < n; t++)
        {
            double mean = 0, variance = 0;
            for (int k = 0; k < e; k++) mean += x[t, k];
            mean /= e;
            for (int k = 0; k < e; k++) variance += (x[t, k] - mean) * (x[t, k] - mean);
            double inv = 1 / Math.Sqrt(variance / e + 1e-5);
            for (int k = 0; k < e; k++) y[t, k] = (x[t, k] - mean) * inv;
        }
        return y;
    }

    private static double[,] MatMul(double[,] x, float[] w, int outputs)
    {
        int n = x.GetLength(0), inputs = x.GetLength(1);
        var y = new double[n, outputs];
        for (int t = 0; t < n; t++)
            for (int k = 0; k < inputs; k++)
            {
                double a = x[t, k];
                for (int o = 0; o < outputs; o++) y[t, o] += a * w[k * outputs + o];
            }
        return y;
    }

    private static void Add(double[,] x, double[,] y)
    {
        for (int t = 0; t < x.GetLength(0); t++)
            for (int k = 0; k < x.GetLength(1); k++) x[t, k] += y[t, k];
    }

    /// <summary>erf to about 1e-7 (Abramowitz and Stegun 7.1.26).</summary>
    private static double Erf(double z)
    {
        double t = 1 / (1 + 0.3275911 * Math.Abs(z));
        double y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-z * z);
        return z >= 0 ? y : -y;
    }
}

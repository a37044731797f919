using System.Buffers.Binary;
using IotDsd.Inference.Llama;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests.Llama;

/// <summary>
/// The ONNX graph against a managed transcription of llama2.c's <c>forward</c> (run.c), on random weights of a shape
/// stories260K does not have: a separate output layer, three query heads per key/value head, two layers.
/// </summary>
public sealed class LlamaReferenceTests
{
    private const int Dim = 24, Hidden = 40, Layers = 2, Heads = 6, KvHeads = 2, Vocab = 13, Seq = 16;

    [Fact]
    public void UntiedGqaCheckpoint_GraphLogits_EqualLlama2cForward()
    {
        var bytes = RandomCheckpoint(seed: 3);
        var checkpoint = Llama2cCheckpoint.Parse(bytes, "random.bin");
        Assert.False(checkpoint.Shape.SharedClassifier);
        var tokenizer = SentencePieceBin.Parse(Tokenizer(), "random-tok.bin");
        var dir = Directory.CreateTempSubdirectory("iotdsd-llama-ref-").FullName;
        try
        {
            Llama2cImporter.Import(checkpoint, tokenizer, "random-tok.bin", dir, "random");
            using var model = ModelDirectory.Load(dir);
            int[] tokens = [1, 5, 9, 3, 12, 7, 4];
            var logits = new float[tokens.Length * Vocab];
            using (var seq = model.CreateSequence())
            {
                seq.Feed(tokens[..3], logits.AsSpan(0, 3 * Vocab));              // a chunk, then one token at a time
                for (int i = 3; i < tokens.Length; i++) seq.Feed([tokens[i]], logits.AsSpan(i * Vocab, Vocab));
            }

            var reference = new Reference(checkpoint);
            for (int pos = 0; pos < tokens.Length; pos++)
            {
                var expected = reference.Forward(tokens[pos], pos);
                for (int v = 0; v < Vocab; v++)
                    Assert.True(Math.Abs(expected[v] - logits[pos * Vocab + v]) < 1e-4f, $"position {pos}, token {v}: {expected[v]} vs {logits[pos * Vocab + v]}");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>run.c's forward, step by step, with its KV cache.</summary>
    private sealed class Reference(Llama2cCheckpoint w)
    {
        private readonly int _headDim = Dim / Heads, _kvDim = KvHeads * (Dim / Heads);
        private readonly float[][] _keys = [.. Enumerable.Range(0, Layers).Select(_ => new float[Seq * KvHeads * (Dim / Heads)])];
        private readonly float[][] _values = [.. Enumerable.Range(0, Layers).Select(_ => new float[Seq * KvHeads * (Dim / Heads)])];

        public float[] Forward(int token, int pos)
        {
            var x = w.TokenEmbedding.AsSpan(token * Dim, Dim).ToArray();
            for (int l = 0; l < Layers; l++)
            {
                var xb = RmsNorm(x, w.RmsAtt[l]);
                var q = MatMul(w.Wq[l], xb, Dim);
                var k = MatMul(w.Wk[l], xb, _kvDim);
                var v = MatMul(w.Wv[l], xb, _kvDim);
                for (int i = 0; i < Dim; i += 2)
                {
                    int headDim = i % _headDim;
                    float freq = 1f / MathF.Pow(10000f, headDim / (float)_headDim);
                    float val = pos * freq, fcr = MathF.Cos(val), fci = MathF.Sin(val);
                    foreach (var vec in i < _kvDim ? new[] { q, k } : [q])
                    {
                        float v0 = vec[i], v1 = vec[i + 1];
                        vec[i] = v0 * fcr - v1 * fci;
                        vec[i + 1] = v0 * fci + v1 * fcr;
                    }
                }

                k.CopyTo(_keys[l], pos * _kvDim);
                v.CopyTo(_values[l], pos * _kvDim);
                var att = new float[Dim];
                int kvMul = Heads / KvHeads;
                for (int h = 0; h < Heads; h++)
                {
                    var scores = new float[pos + 1];
                    for (int t = 0; t <= pos; t++)
                    {
                        float s = 0;
                        for (int i = 0; i < _headDim; i++) s += q[h * _headDim + i] * _keys[l][t * _kvDim + (h / kvMul) * _headDim + i];
                        scores[t] = s / MathF.Sqrt(_headDim);
                    }

                    float max = scores.Max(), sum = 0;
                    for (int t = 0; t <= pos; t++) sum += scores[t] = MathF.Exp(scores[t] - max);
                    for (int t = 0; t <= pos; t++)
                    {
                        for (int i = 0; i < _headDim; i++) att[h * _headDim + i] += scores[t] / sum * _values[l][t * _kvDim + (h / kvMul) * _headDim + i];
                    }
                }

                var o = MatMul(w.Wo[l], att, Dim);
                for (int i = 0; i < Dim; i++) x[i] += o[i];
                var xb2 = RmsNorm(x, w.RmsFfn[l]);
                var h1 = MatMul(w.W1[l], xb2, Hidden);
                var h3 = MatMul(w.W3[l], xb2, Hidden);
                for (int i = 0; i < Hidden; i++) h1[i] = h1[i] * (1f / (1f + MathF.Exp(-h1[i]))) * h3[i];
                var down = MatMul(w.W2[l], h1, Dim);
                for (int i = 0; i < Dim; i++) x[i] += down[i];
            }

            return MatMul(w.Classifier, RmsNorm(x, w.RmsFinal), Vocab);
        }

        private static float[] RmsNorm(float[] x, float[] weight)
        {
            float ss = 0;
            foreach (var v in x) ss += v * v;
            ss = 1f / MathF.Sqrt(ss / x.Length + 1e-5f);
            return [.. x.Select((v, i) => weight[i] * (ss * v))];
        }

        /// <summary>W [d, n] times x [n], as run.c's matmul.</summary>
        private static float[] MatMul(float[] w, float[] x, int d)
        {
            int n = x.Length;
            var o = new float[d];
            for (int i = 0; i < d; i++)
            {
                float s = 0;
                for (int j = 0; j < n; j++) s += w[i * n + j] * x[j];
                o[i] = s;
            }
            return o;
        }
    }

    private static byte[] RandomCheckpoint(int seed)
    {
        int headDim = Dim / Heads, kvDim = KvHeads * headDim;
        int floats = Vocab * Dim + Layers * (2 * Dim + 2 * Dim * Dim + 2 * kvDim * Dim + 3 * Hidden * Dim) + Dim + Seq * headDim + Vocab * Dim;
        var bytes = new byte[28 + floats * 4];
        int[] header = [Dim, Hidden, Layers, Heads, KvHeads, -Vocab, Seq];
        for (int i = 0; i < 7; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), header[i]);
        var random = new Random(seed);
        for (int i = 0; i < floats; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(28 + i * 4), (float)(random.NextDouble() * 0.6 - 0.3) + (i % 97 == 0 ? 1f : 0f));
        return bytes;
    }

    private static byte[] Tokenizer()
    {
        using var ms = new MemoryStream();
        using var writer = new BinaryWriter(ms);
        writer.Write(8);
        string[] pieces = ["<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " a", "b", " ab", "c", " c", "d", " d", "e", " e"];
        for (int i = 0; i < pieces.Length; i++)
        {
            var b = System.Text.Encoding.UTF8.GetBytes(pieces[i]);
            writer.Write(-(float)i);
            writer.Write(b.Length);
            writer.Write(b);
        }
        writer.Flush();
        return ms.ToArray();
    }
}

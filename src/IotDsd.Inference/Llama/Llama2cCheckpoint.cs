using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace IotDsd.Inference.Llama;

/// <summary>Shape of a Llama-architecture decoder as llama2.c's checkpoint header gives it.</summary>
public sealed record LlamaShape(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, int SeqLen, bool SharedClassifier)
{
    public int HeadDim => Dim / Heads;
    public int KvDim => KvHeads * HeadDim;
    public float RmsEpsilon { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
}

/// <summary>
/// A llama2.c checkpoint (the "legacy" version-0 format <c>run.c</c> reads): seven int32 — dim, hidden_dim,
/// n_layers, n_heads, n_kv_heads, vocab_size (negative when the classifier is not shared with the token embedding),
/// seq_len — then float32 weights in this order: token embedding [vocab, dim]; per layer, stacked over layers:
/// rms_att [dim], wq [dim, dim], wk [kv_dim, dim], wv [kv_dim, dim], wo [dim, dim], rms_ffn [dim],
/// w1 [hidden, dim], w2 [dim, hidden], w3 [hidden, dim]; rms_final [dim]; two unused rotary tables
/// [seq_len, head_dim/2] each; the classifier [vocab, dim] when it is not shared. Matrices are [out, in], row-major.
/// </summary>
public sealed class Llama2cCheckpoint
{
    public const int HeaderBytes = 7 * sizeof(int);

    private Llama2cCheckpoint(LlamaShape shape) => Shape = shape;

    public LlamaShape Shape { get; }
    public float[] TokenEmbedding { get; private init; } = [];
    public float[][] RmsAtt { get; private init; } = [];
    public float[][] Wq { get; private init; } = [];
    public float[][] Wk { get; private init; } = [];
    public float[][] Wv { get; private init; } = [];
    public float[][] Wo { get; private init; } = [];
    public float[][] RmsFfn { get; private init; } = [];
    public float[][] W1 { get; private init; } = [];
    public float[][] W2 { get; private init; } = [];
    public float[][] W3 { get; private init; } = [];
    public float[] RmsFinal { get; private init; } = [];

    /// <summary>The output layer [vocab, dim]: the token embedding when shared.</summary>
    public float[] Classifier { get; private init; } = [];

    /// <summary>Reads <paramref name="path"/>; throws <see cref="InvalidDataException"/> with a one-line reason naming the file.</summary>
    public static Llama2cCheckpoint Read(string path)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"cannot read llama2.c checkpoint '{path}': {e.Message}", e);
        }

        return Parse(data, path);
    }

    /// <summary>Parses checkpoint bytes; <paramref name="name"/> names the file in errors.</summary>
    public static Llama2cCheckpoint Parse(ReadOnlySpan<byte> data, string name)
    {
        if (data.Length < HeaderBytes)
            throw new InvalidDataException($"'{name}' is not a llama2.c checkpoint: {data.Length} bytes, shorter than the {HeaderBytes}-byte header.");
        Span<int> h = stackalloc int[7];
        for (int i = 0; i < 7; i++) h[i] = BinaryPrimitives.ReadInt32LittleEndian(data[(i * 4)..]);
        int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kvHeads = h[4], vocab = Math.Abs(h[5]), seq = h[6];
        bool shared = h[5] > 0;
        string header = $"dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {h[5]}, seq_len {seq}";
        if (dim is < 1 or > 65536 || hidden is < 1 or > 1 << 20 || layers is < 1 or > 1024 || heads < 1 || kvHeads < 1 || kvHeads > heads
            || heads % kvHeads != 0 || dim % heads != 0 || (dim / heads) % 2 != 0 || h[5] == 0 || vocab > 1 << 22 || seq is < 1 or > 1 << 20)
            throw new InvalidDataException($"'{name}' has a llama2.c header that describes no valid model ({header}).");
        var shape = new LlamaShape(dim, hidden, layers, heads, kvHeads, vocab, seq, shared);
        int headDim = dim / heads, kvDim = kvHeads * headDim;
        long floats = (long)vocab * dim + layers * (2L * dim + 2L * dim * dim + 2L * kvDim * dim + 3L * hidden * dim) + dim
            + (long)seq * headDim + (shared ? 0 : (long)vocab * dim);
        long expected = HeaderBytes + floats * sizeof(float);
        if (data.Length != expected)
            throw new InvalidDataException(data.Length < expected
                ? $"'{name}' is truncated: {data.Length} bytes, but its header ({header}) needs {expected}."
                : $"'{name}' has {data.Length - expected} bytes after the weights its header ({header}) describes; it is not a llama2.c checkpoint of that shape.");

        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("llama2.c checkpoints are little-endian.");
        var weights = MemoryMarshal.Cast<byte, float>(data[HeaderBytes..]).ToArray();
        int at = 0;
        float[] Take(long count)
        {
            var span = weights.AsSpan(at, (int)count);
            at += (int)count;
            foreach (var f in span)
            {
                if (!float.IsFinite(f)) throw new InvalidDataException($"'{name}' holds a weight that is not a finite number (at float {at}).");
            }
            return span.ToArray();
        }
        float[][] PerLayer(long count)
        {
            var all = new float[layers][];
            for (int l = 0; l < layers; l++) all[l] = Take(count);
            return all;
        }

        var embedding = Take((long)vocab * dim);
        var rmsAtt = PerLayer(dim);
        var wq = PerLayer((long)dim * dim);
        var wk = PerLayer((long)kvDim * dim);
        var wv = PerLayer((long)kvDim * dim);
        var wo = PerLayer((long)dim * dim);
        var rmsFfn = PerLayer(dim);
        var w1 = PerLayer((long)hidden * dim);
        var w2 = PerLayer((long)dim * hidden);
        var w3 = PerLayer((long)hidden * dim);
        var rmsFinal = Take(dim);
        at += seq * headDim; // freq_cis_real and freq_cis_imag: recomputed by the graph's own tables
        var classifier = shared ? embedding : Take((long)vocab * dim);
        return new Llama2cCheckpoint(shape)
        {
            TokenEmbedding = embedding, RmsAtt = rmsAtt, Wq = wq, Wk = wk, Wv = wv, Wo = wo, RmsFfn = rmsFfn,
            W1 = w1, W2 = w2, W3 = w3, RmsFinal = rmsFinal, Classifier = classifier,
        };
    }

    /// <summary>
    /// A checkpoint of <paramref name="shape"/> with random weights, as a Llama is initialised before training: every
    /// matrix uniform with standard deviation <paramref name="std"/> (seeded per matrix, so the same seed gives the same
    /// model), every RMSNorm weight 1. For measuring a shape's cost, not for text.
    /// </summary>
    public static Llama2cCheckpoint Random(LlamaShape shape, ulong seed, float std = 0.02f)
    {
        ArgumentNullException.ThrowIfNull(shape);
        int dim = shape.Dim, kvDim = shape.KvDim, hidden = shape.HiddenDim, layers = shape.Layers;
        float bound = std * MathF.Sqrt(3f);
        float[] Matrix(long count, int stream, int layer)
        {
            var m = new float[count];
            var rng = new System.Random(unchecked((int)(seed * 0x9E3779B97F4A7C15UL >> 33) ^ (stream * 7919) ^ (layer * 104729)));
            for (long i = 0; i < m.Length; i++) m[i] = (rng.NextSingle() * 2f - 1f) * bound;
            return m;
        }
        float[][] PerLayer(long count, int stream)
        {
            var all = new float[layers][];
            Parallel.For(0, layers, l => all[l] = Matrix(count, stream, l));
            return all;
        }
        float[][] Ones(int count)
        {
            var all = new float[layers][];
            for (int l = 0; l < layers; l++) all[l] = Enumerable.Repeat(1f, count).ToArray();
            return all;
        }

        var embedding = Matrix((long)shape.VocabSize * dim, 0, 0);
        return new Llama2cCheckpoint(shape)
        {
            TokenEmbedding = embedding, RmsAtt = Ones(dim), Wq = PerLayer((long)dim * dim, 1), Wk = PerLayer((long)kvDim * dim, 2),
            Wv = PerLayer((long)kvDim * dim, 3), Wo = PerLayer((long)dim * dim, 4), RmsFfn = Ones(dim), W1 = PerLayer((long)hidden * dim, 5),
            W2 = PerLayer((long)dim * hidden, 6), W3 = PerLayer((long)hidden * dim, 7), RmsFinal = Enumerable.Repeat(1f, dim).ToArray(),
            Classifier = shape.SharedClassifier ? embedding : Matrix((long)shape.VocabSize * dim, 8, 0),
        };
    }

    /// <summary>Parameters of <paramref name="shape"/> (the classifier counted once when shared).</summary>
    public static long ParameterCount(LlamaShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long dim = shape.Dim, kvDim = shape.KvDim, hidden = shape.HiddenDim;
        return shape.VocabSize * dim * (shape.SharedClassifier ? 1 : 2) + dim
            + shape.Layers * (2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * hidden * dim);
    }
}

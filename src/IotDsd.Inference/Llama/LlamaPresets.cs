using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Llama;

/// <summary>
/// Llama-architecture models of a named shape with random weights (RMSNorm, rotary embeddings, grouped-query
/// attention, SwiGLU, an untied output layer), written through <see cref="LlamaGraph"/> and
/// <see cref="Llama2cImporter"/> as a model directory any command loads: for measuring what a shape costs on a
/// provider, not for text. The tokenizer is stories260K's 512 pieces padded with unused pieces to the vocabulary.
/// </summary>
public static class LlamaPresets
{
    /// <summary>
    /// <c>llama-tiny</c> (2 layers, 128 wide, 8 heads, 2 KV heads, 512 intermediate, vocabulary 32,000: tests),
    /// <c>llama-300m</c> (16 layers, 1,024 wide, 16 heads, 4 KV heads, 4,096 intermediate: 0.31 B parameters) and
    /// <c>llama-1b</c> (16 layers, 2,048 wide, 32 heads, 8 KV heads, 8,192 intermediate: 1.10 B parameters, the shape
    /// of TinyLlama and Llama 3.2 1B with a 32,000-token vocabulary). All with a 2,048-token context and RoPE θ 10,000.
    /// </summary>
    public static IReadOnlyList<string> Names { get; } = ["llama-tiny", "llama-300m", "llama-1b"];

    /// <summary>The target shape of a preset; a draft keeps its first quarter of layers (at least one).</summary>
    public static LlamaShape Shape(string preset, string role = "target")
    {
        var target = preset switch
        {
            "llama-tiny" => new LlamaShape(Dim: 128, HiddenDim: 512, Layers: 2, Heads: 8, KvHeads: 2, VocabSize: 32000, SeqLen: 2048, SharedClassifier: false),
            "llama-300m" => new LlamaShape(Dim: 1024, HiddenDim: 4096, Layers: 16, Heads: 16, KvHeads: 4, VocabSize: 32000, SeqLen: 2048, SharedClassifier: false),
            "llama-1b" => new LlamaShape(Dim: 2048, HiddenDim: 8192, Layers: 16, Heads: 32, KvHeads: 8, VocabSize: 32000, SeqLen: 2048, SharedClassifier: false),
            _ => throw new ArgumentException($"Unknown Llama preset '{preset}'; known: {string.Join(", ", Names)}.", nameof(preset)),
        };
        return role == "draft" ? target with { Layers = Math.Max(1, target.Layers / 4) } : target;
    }

    /// <summary>Bytes of the float32 weights of <paramref name="shape"/>.</summary>
    public static long WeightBytes(LlamaShape shape) => Llama2cCheckpoint.ParameterCount(shape) * sizeof(float);

    /// <summary>
    /// Writes the model directory of <paramref name="preset"/> for <paramref name="role"/> (target or draft; the same
    /// seed gives a draft whose layers are the target's first ones). Float32 weights; past
    /// <see cref="LlamaGraph.ExternalDataThresholdBytes"/> (llama-1b's 4.4 GB) they go to <c>model.onnx.data</c> beside
    /// the graph, as exporters write models over ONNX's 2 GiB single-file limit.
    /// </summary>
    public static ModelManifest Build(string preset, string role, ulong seed, string outDir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        var shape = Shape(preset, role);
        var checkpoint = Llama2cCheckpoint.Random(shape, seed);
        var name = $"{preset}-{role}-s{seed}";
        return Llama2cImporter.Import(checkpoint, Vocabulary(shape.VocabSize), "tok512.bin (shipped, padded)", outDir, name, role);
    }

    /// <summary>stories260K's 512 pieces (ids 0-2 special, 3-258 bytes), then unused pieces up to <paramref name="size"/>.</summary>
    public static IReadOnlyList<SentencePieceBin.Entry> Vocabulary(int size)
    {
        var shipped = SentencePieceBin.Parse(StoriesModels.TokenizerBytes(), "tok512.bin (shipped)");
        var entries = new List<SentencePieceBin.Entry>(shipped.Take(size));
        var seen = entries.Select(e => e.Piece).ToHashSet(StringComparer.Ordinal);
        float score = entries[^1].Score;
        for (long n = 0; entries.Count < size; n++)
        {
            // ▁a, ▁b, ..., ▁z, ▁aa, ▁ab, ...: distinct pieces that only fill the vocabulary.
            var chars = new System.Text.StringBuilder();
            for (long k = n; ; k = k / 26 - 1)
            {
                chars.Insert(0, (char)('a' + (int)(k % 26)));
                if (k < 26) break;
            }
            var piece = "\u2581" + chars;
            if (seen.Add(piece)) entries.Add(new SentencePieceBin.Entry(piece, --score));
        }
        return entries;
    }
}

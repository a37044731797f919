using System.Security.Cryptography;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Writes a transformer model directory: <c>model.onnx</c> (see <see cref="TransformerGraph"/>), a byte-level
/// <c>tokenizer.json</c> and <c>manifest.json</c>. Draft and target built from the same preset and seed share the
/// vocabulary, the embeddings, the output layer and the draft's layers.
/// </summary>
public static class TransformerModelBuilder
{
    public const string Kind = "transformer";
    public const string ModelFileName = "model.onnx";
    public const string TokenizerFileName = "tokenizer.json";

    /// <summary>Builds the <paramref name="preset"/> model for <paramref name="role"/> into <paramref name="outDir"/>.</summary>
    public static ModelManifest Build(string preset, string role, ulong seed, string outDir, ReadOnlySpan<byte> corpus, string corpusName) =>
        Build(TransformerConfig.ForPreset(preset, role, seed), role, outDir, corpus, corpusName);

    /// <summary>Builds <paramref name="config"/> into <paramref name="outDir"/>; <paramref name="layersDone"/> as for <see cref="TransformerGraph.Build"/>.</summary>
    public static ModelManifest Build(TransformerConfig config, string role, string outDir, ReadOnlySpan<byte> corpus, string corpusName, Action<int>? layersDone = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrWhiteSpace(role);
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        if (corpus.Length < 2) throw new ArgumentException("The corpus needs at least two bytes.", nameof(corpus));
        var onnx = TransformerGraph.Build(config, corpus, layersDone);
        Directory.CreateDirectory(outDir);
        var modelPath = Path.Combine(outDir, ModelFileName);
        var tokenizerPath = Path.Combine(outDir, TokenizerFileName);
        File.WriteAllBytes(modelPath, onnx);
        HfBpeTokenizer.WriteByteVocabulary(tokenizerPath);
        var manifest = new ModelManifest
        {
            Kind = Kind,
            Role = role,
            Name = $"gpt2-{config.Preset}-{config.Layers}l-{role}",
            VocabSize = config.VocabSize,
            Tokenizer = TokenizerFactory.HuggingFace,
            Files = new() { [ModelManifest.ModelFileKey] = ModelFileName, [ModelManifest.TokenizerFileKey] = TokenizerFileName },
            Sha256 = new()
            {
                [ModelManifest.ModelFileKey] = Convert.ToHexStringLower(SHA256.HashData(onnx)),
                [ModelManifest.TokenizerFileKey] = ModelDirectory.Sha256File(tokenizerPath),
            },
            Corpus = new CorpusInfo(corpusName, corpus.Length, Convert.ToHexStringLower(SHA256.HashData(corpus))),
            Transformer = config,
        };
        File.WriteAllText(Path.Combine(outDir, ModelManifest.FileName), manifest.ToJson() + "\n");
        return manifest;
    }
}

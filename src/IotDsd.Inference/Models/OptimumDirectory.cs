using System.Text.Json;

namespace IotDsd.Inference.Models;

/// <summary>
/// A directory as Hugging Face Optimum exports it (<c>optimum-cli export onnx --task text-generation-with-past</c>):
/// <c>model.onnx</c>, <c>tokenizer.json</c> and <c>config.json</c>, no <c>manifest.json</c>. It is described by a
/// manifest made in memory (kind transformer, vocabulary and context length from config.json); its files are not
/// checksummed, since nothing recorded their hashes.
/// </summary>
public static class OptimumDirectory
{
    public const string ModelFile = "model.onnx";
    public const string TokenizerFile = "tokenizer.json";
    public const string ConfigFile = "config.json";

    /// <summary>The manifest for <paramref name="dir"/>, or null when it is not an Optimum export.</summary>
    public static ModelManifest? TryDescribe(string dir)
    {
        if (!File.Exists(Path.Combine(dir, ModelFile)) || !File.Exists(Path.Combine(dir, TokenizerFile))) return null;
        var configPath = Path.Combine(dir, ConfigFile);
        if (!File.Exists(configPath))
            throw new ModelLoadException(configPath, $"'{dir}' holds {ModelFile} and {TokenizerFile} but no {ConfigFile}; copy the model's " +
                $"config.json from the export (it gives vocab_size and the context length), or write a {ModelManifest.FileName}.");
        int vocab, positions;
        string name;
        try
        {
            using var config = JsonDocument.Parse(File.ReadAllBytes(configPath));
            var root = config.RootElement;
            vocab = root.TryGetProperty("vocab_size", out var v) ? v.GetInt32() : 0;
            positions = root.TryGetProperty("n_positions", out var p) ? p.GetInt32()
                : root.TryGetProperty("max_position_embeddings", out var m) ? m.GetInt32() : 0;
            name = root.TryGetProperty("_name_or_path", out var n) && n.GetString() is { Length: > 0 } s ? s
                : root.TryGetProperty("model_type", out var t) ? t.GetString() ?? "transformer" : "transformer";
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new ModelLoadException(configPath, $"'{configPath}' is not a valid Hugging Face config.json: {e.Message}", e);
        }

        if (vocab <= 0) throw new ModelLoadException(configPath, $"'{configPath}' has no positive vocab_size.");
        return new ModelManifest
        {
            Kind = Transformer.TransformerModelBuilder.Kind,
            Role = "",
            Name = name,
            VocabSize = vocab,
            Tokenizer = Tokenizers.TokenizerFactory.HuggingFace,
            Files = new() { [ModelManifest.ModelFileKey] = ModelFile, [ModelManifest.TokenizerFileKey] = TokenizerFile },
            Transformer = positions > 0 ? new Transformer.TransformerConfig { Preset = "optimum", MaxPositions = positions, VocabSize = vocab } : null,
            Unverified = true,
        };
    }
}

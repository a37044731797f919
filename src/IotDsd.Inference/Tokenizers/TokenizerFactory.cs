using IotDsd.Inference.Models;

namespace IotDsd.Inference.Tokenizers;

/// <summary>Chooses the tokenizer a model directory's manifest names.</summary>
public static class TokenizerFactory
{
    /// <summary>Manifest tokenizer value for raw UTF-8 bytes.</summary>
    public const string Bytes = "bytes";

    /// <summary>Manifest tokenizer value for a Hugging Face <c>tokenizer.json</c> (files["tokenizer"]).</summary>
    public const string HuggingFace = "tokenizer.json";

    public static ITokenizer ForManifest(ModelManifest manifest, string? dir = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        switch (manifest.Tokenizer)
        {
            case Bytes:
                return ByteTokenizer.Instance;
            case HuggingFace when dir is not null && manifest.Files.ContainsKey(ModelManifest.TokenizerFileKey):
                var path = ModelDirectory.FilePath(dir, manifest, ModelManifest.TokenizerFileKey);
                try
                {
                    return HfBpeTokenizer.Load(path);
                }
                catch (TokenizerFormatException e)
                {
                    throw new ModelLoadException(path, $"Cannot load tokenizer {e.Message}", e);
                }
            case HuggingFace:
                throw new ModelLoadException(dir ?? manifest.Name, $"Model '{manifest.Name}' asks for a tokenizer.json but its manifest names no \"{ModelManifest.TokenizerFileKey}\" file.");
            default:
                throw new ModelLoadException(dir ?? manifest.Name,
                    $"Model '{manifest.Name}' asks for tokenizer '{manifest.Tokenizer}'; this build knows '{Bytes}' and '{HuggingFace}'.");
        }
    }

    public static ITokenizer ForModelDirectory(string dir) => ForManifest(ModelDirectory.ReadManifest(dir), dir);
}

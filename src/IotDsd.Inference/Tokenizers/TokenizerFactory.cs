using IotDsd.Inference.Models;

namespace IotDsd.Inference.Tokenizers;

/// <summary>Chooses the tokenizer a model directory's manifest names.</summary>
public static class TokenizerFactory
{
    public static ITokenizer ForManifest(ModelManifest manifest, string? dir = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return manifest.Tokenizer switch
        {
            "bytes" => ByteTokenizer.Instance,
            _ => throw new ModelLoadException(dir ?? manifest.Name,
                $"Model '{manifest.Name}' asks for tokenizer '{manifest.Tokenizer}'; this build knows only 'bytes'."),
        };
    }

    public static ITokenizer ForModelDirectory(string dir) => ForManifest(ModelDirectory.ReadManifest(dir), dir);
}

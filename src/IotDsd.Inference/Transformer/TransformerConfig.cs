using System.Text.Json.Serialization;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Shape of a GPT-2-style decoder built by <see cref="TransformerModelBuilder"/>: layers, width, heads, context
/// length and vocabulary. Byte tokens 0..255 are live; a larger <see cref="VocabSize"/> pads the embedding and the
/// output layer to a real model's size (compute-realistic), and the padded ids are never predicted.
/// </summary>
public sealed record TransformerConfig
{
    [JsonPropertyName("preset")] public string Preset { get; init; } = "custom";
    [JsonPropertyName("layers")] public int Layers { get; init; }
    [JsonPropertyName("hidden")] public int Hidden { get; init; }
    [JsonPropertyName("heads")] public int Heads { get; init; }
    [JsonPropertyName("max_positions")] public int MaxPositions { get; init; }
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("seed")] public ulong Seed { get; init; }

    /// <summary>Scale of each block's contribution to the residual stream, relative to the token embedding.</summary>
    [JsonPropertyName("residual_scale")] public float ResidualScale { get; init; } = 0.35f;

    [JsonIgnore] public int HeadDim => Hidden / Heads;

    /// <summary>Live token ids: the 256 byte values.</summary>
    public const int LiveTokens = 256;

    /// <summary>Layers a draft keeps of a target with <paramref name="targetLayers"/> layers: the first quarter (at least one).</summary>
    public static int DraftLayers(int targetLayers) => Math.Max(1, targetLayers / 4);

    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "small"];

    /// <summary>
    /// A named preset for <paramref name="role"/>: <c>tiny</c> (4 layers, 128 wide, 4 heads, 256 tokens: for tests)
    /// and <c>small</c> (GPT-2-small shape: 12 layers, 768 wide, 12 heads, 50257 tokens, 1024 positions). A draft keeps
    /// the target's first <see cref="DraftLayers"/> layers, with the same embeddings and output layer.
    /// </summary>
    public static TransformerConfig ForPreset(string preset, string role, ulong seed)
    {
        var target = preset switch
        {
            "tiny" => new TransformerConfig { Preset = "tiny", Layers = 4, Hidden = 128, Heads = 4, MaxPositions = 1024, VocabSize = LiveTokens, Seed = seed },
            "small" => new TransformerConfig { Preset = "small", Layers = 12, Hidden = 768, Heads = 12, MaxPositions = 1024, VocabSize = 50257, Seed = seed },
            _ => throw new ArgumentException($"Unknown preset '{preset}'; known: {string.Join(", ", PresetNames)}.", nameof(preset)),
        };
        return role switch
        {
            "target" => target,
            "draft" => target with { Layers = DraftLayers(target.Layers) },
            _ => throw new ArgumentException($"Role must be draft or target, not '{role}'.", nameof(role)),
        };
    }

    /// <summary>Null when the shape is usable; otherwise what is wrong.</summary>
    public string? Validate()
    {
        if (Layers < 1) return "layers must be at least 1";
        if (Hidden < 8 || Heads < 1 || Hidden % Heads != 0) return "hidden must be a multiple of heads (and at least 8)";
        if (MaxPositions < 16) return "max_positions must be at least 16";
        if (VocabSize < LiveTokens) return $"vocab_size must be at least {LiveTokens}";
        if (!(ResidualScale >= 0f)) return "residual_scale must be non-negative";
        return null;
    }
}

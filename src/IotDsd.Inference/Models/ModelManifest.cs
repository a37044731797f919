using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Inference.Models;

/// <summary>
/// <c>manifest.json</c> of a model directory (format <c>iotdsd-model/1</c>, snake_case JSON).
/// <see cref="Files"/> maps a role ("model") to a file name in the directory; <see cref="Sha256"/> maps the same
/// roles to the lowercase hex SHA-256 of those files.
/// </summary>
public sealed record ModelManifest
{
    public const string FormatV1 = "iotdsd-model/1";
    public const string FileName = "manifest.json";
    public const string ModelFileKey = "model";
    public const string TokenizerFileKey = "tokenizer";

    [JsonPropertyName("format")] public string Format { get; init; } = FormatV1;
    [JsonPropertyName("kind")] public string Kind { get; init; } = "";
    [JsonPropertyName("role")] public string Role { get; init; } = "";
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("tokenizer")] public string Tokenizer { get; init; } = "";
    [JsonPropertyName("order")] public int? Order { get; init; }
    [JsonPropertyName("files")] public Dictionary<string, string> Files { get; init; } = [];
    [JsonPropertyName("sha256")] public Dictionary<string, string> Sha256 { get; init; } = [];
    [JsonPropertyName("corpus")] public CorpusInfo? Corpus { get; init; }
    [JsonPropertyName("discounts")] public double[]? Discounts { get; init; }
    [JsonPropertyName("heldout_bits_per_byte")] public double? HeldoutBitsPerByte { get; init; }
    /// <summary>Made in memory for a directory without a manifest (an Optimum export): files are not checksummed.</summary>
    [JsonIgnore] public bool Unverified { get; init; }

    /// <summary>An export's configuration (config.json or genai_config.json): names and shapes the graph must have.</summary>
    [JsonIgnore] public Transformer.DecoderExpectations? Decoder { get; init; }

    [JsonPropertyName("transformer")] public Transformer.TransformerConfig? Transformer { get; init; }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static ModelManifest FromJson(string json) =>
        JsonSerializer.Deserialize<ModelManifest>(json, JsonOptions) ?? throw new JsonException("manifest is JSON null");
}

/// <summary>The training corpus of a model: name, size in bytes and SHA-256 of the uncompressed text.</summary>
public sealed record CorpusInfo(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("sha256")] string Sha256);

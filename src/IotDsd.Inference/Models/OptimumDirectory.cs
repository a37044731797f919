using System.Text.Json;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Models;

/// <summary>
/// A directory as exporters write it, without <c>manifest.json</c>: Hugging Face Optimum's
/// (<c>optimum-cli export onnx --task text-generation-with-past</c>: <c>model.onnx</c> or
/// <c>decoder_model_merged.onnx</c>, <c>config.json</c>, <c>tokenizer.json</c>) or onnxruntime-genai's model builder
/// (<c>genai_config.json</c> naming the decoder file and its inputs and outputs). External weights
/// (<c>model.onnx.data</c>) are read by ONNX Runtime beside the graph. It is described by a manifest made in memory
/// (kind transformer, vocabulary, context length and the shapes the configuration promises, checked against the graph
/// at load); its files are not checksummed, since nothing recorded their hashes.
/// </summary>
public static class OptimumDirectory
{
    public const string ModelFile = "model.onnx";
    public const string MergedModelFile = "decoder_model_merged.onnx";
    public const string WithPastModelFile = "decoder_with_past_model.onnx";
    public const string TokenizerFile = "tokenizer.json";
    public const string ConfigFile = "config.json";
    public const string GenAiConfigFile = "genai_config.json";

    /// <summary>Decoder files looked for, in order, when no genai_config.json names one.</summary>
    public static IReadOnlyList<string> ModelFiles { get; } = [ModelFile, MergedModelFile, WithPastModelFile];

    /// <summary>The manifest for <paramref name="dir"/>, or null when it is not an export.</summary>
    /// <exception cref="ModelLoadException">It looks like an export, but a configuration file is missing or invalid.</exception>
    public static ModelManifest? TryDescribe(string dir)
    {
        if (!File.Exists(Path.Combine(dir, TokenizerFile))) return null;
        var genai = Path.Combine(dir, GenAiConfigFile);
        var config = Path.Combine(dir, ConfigFile);
        // genai_config.json names the decoder file and its tensors (genai folders often carry config.json as well).
        if (File.Exists(genai)) return DescribeGenAi(dir, genai);

        var model = ModelFiles.FirstOrDefault(f => File.Exists(Path.Combine(dir, f)));
        if (model is null) return null;
        if (!File.Exists(config))
            throw new ModelLoadException(config, $"'{dir}' holds {model} and {TokenizerFile} but no {ConfigFile}; copy the model's " +
                $"config.json from the export (it gives vocab_size and the context length), or write a {ModelManifest.FileName}.");
        return DescribeHuggingFace(dir, config, model);
    }

    private static ModelManifest DescribeHuggingFace(string dir, string path, string model)
    {
        return Parse(path, root =>
        {
            int vocab = Int(path, root, "vocab_size") ?? 0;
            if (vocab <= 0) throw new ModelLoadException(path, $"'{path}' has no positive vocab_size.");
            int positions = Int(path, root, "n_positions") ?? Int(path, root, "max_position_embeddings") ?? 0;
            int? layers = Int(path, root, "num_hidden_layers") ?? Int(path, root, "n_layer");
            // Multi-query exports (gpt_bigcode) keep one cache head whatever num_attention_heads says.
            bool multiQuery = root.TryGetProperty("multi_query", out var mq) && mq.ValueKind == JsonValueKind.True;
            int? kvHeads = Int(path, root, "num_key_value_heads") ?? (multiQuery ? 1 : Int(path, root, "num_attention_heads") ?? Int(path, root, "n_head"));
            int? headDim = Int(path, root, "head_dim");
            var name = Text(path, root, "_name_or_path") is { Length: > 0 } n ? n : Text(path, root, "model_type") ?? "transformer";
            return Manifest(name, vocab, positions, model, new DecoderExpectations
            {
                Source = path, VocabSize = vocab, Layers = layers, KvHeads = kvHeads, HeadDim = headDim,
            });
        });
    }

    private static ModelManifest DescribeGenAi(string dir, string path)
    {
        return Parse(path, root =>
        {
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException(path, $"'{path}' has no \"model\" object; it is not an onnxruntime-genai configuration.");
            if (!model.TryGetProperty("decoder", out var decoder) || decoder.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException(path, $"'{path}' has no \"model.decoder\" object.");
            int vocab = Int(path, model, "vocab_size") ?? 0;
            if (vocab <= 0) throw new ModelLoadException(path, $"'{path}' has no positive model.vocab_size.");
            var file = Text(path, decoder, "filename") ?? ModelFile;
            if (file.Length == 0 || file.Contains('\0', StringComparison.Ordinal) || Path.IsPathRooted(file) || file.Split('/', '\\').Contains(".."))
                throw new ModelLoadException(path, $"'{path}' names decoder file '{Shorten(file)}'; it must be a file inside the model directory.");
            if (!File.Exists(Path.Combine(dir, file)))
                throw new ModelLoadException(path, $"'{path}' names decoder file '{Shorten(file)}', which is not in '{dir}'.");

            var names = new DecoderNames();
            if (decoder.TryGetProperty("inputs", out var inputs))
            {
                names = names with
                {
                    InputIds = Name(path, inputs, "input_ids", false) ?? names.InputIds,
                    AttentionMask = Name(path, inputs, "attention_mask", false) ?? names.AttentionMask,
                    PositionIds = Name(path, inputs, "position_ids", false) ?? names.PositionIds,
                    PastKey = Name(path, inputs, "past_key_names", true) ?? names.PastKey,
                    PastValue = Name(path, inputs, "past_value_names", true) ?? names.PastValue,
                    Past = Name(path, inputs, "past_names", true),
                };
            }
            if (decoder.TryGetProperty("outputs", out var outputs))
            {
                names = names with
                {
                    Logits = Name(path, outputs, "logits", false) ?? names.Logits,
                    PresentKey = Name(path, outputs, "present_key_names", true) ?? names.PresentKey,
                    PresentValue = Name(path, outputs, "present_value_names", true) ?? names.PresentValue,
                    Present = Name(path, outputs, "present_names", true),
                };
            }

            var type = Text(path, model, "type") ?? "transformer";
            return Manifest(type, vocab, Int(path, model, "context_length") ?? 0, file, new DecoderExpectations
            {
                Source = path,
                VocabSize = vocab,
                Layers = Int(path, decoder, "num_hidden_layers"),
                KvHeads = Int(path, decoder, "num_key_value_heads"),
                HeadDim = Int(path, decoder, "head_size"),
                Names = names,
            });
        });
    }

    private static ModelManifest Manifest(string name, int vocab, int positions, string model, DecoderExpectations expected) => new()
    {
        Kind = TransformerModelBuilder.Kind,
        Role = "",
        Name = name,
        VocabSize = vocab,
        Tokenizer = Tokenizers.TokenizerFactory.HuggingFace,
        Files = new() { [ModelManifest.ModelFileKey] = model, [ModelManifest.TokenizerFileKey] = TokenizerFile },
        Transformer = positions > 0 ? new TransformerConfig { Preset = "optimum", MaxPositions = positions, VocabSize = vocab } : null,
        Decoder = expected,
        Unverified = true,
    };

    private static ModelManifest Parse(string path, Func<JsonElement, ModelManifest> describe)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 64 });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException(path, $"'{path}' is not a JSON object.");
            return describe(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(path, $"'{path}' is not valid JSON: {Show(e.Message, 200)}", e);
        }
        catch (InvalidOperationException e) // a string that is not valid UTF-8
        {
            throw new ModelLoadException(path, $"'{path}' is not valid JSON: {Show(e.Message, 200)}", e);
        }
        catch (IOException e)
        {
            throw new ModelLoadException(path, $"'{path}' cannot be read: {e.Message}", e);
        }
    }

    /// <summary>A positive whole number, absent (null) or an error naming the key.</summary>
    private static int? Int(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var n) || n <= 0)
            throw new ModelLoadException(path, $"'{path}' has {key} {Shorten(value.GetRawText())}; it must be a positive whole number.");
        return n;
    }

    private static string? Text(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String)
            throw new ModelLoadException(path, $"'{path}' has {key} {Shorten(value.GetRawText())}; it must be a string.");
        return value.GetString();
    }

    /// <summary>A tensor name (per layer: containing %d once).</summary>
    private static string? Name(string path, JsonElement parent, string key, bool perLayer)
    {
        if (parent.ValueKind != JsonValueKind.Object) throw new ModelLoadException(path, $"'{path}': the decoder's inputs and outputs must be objects.");
        var name = Text(path, parent, key);
        if (name is null) return null;
        int marks = name.Split("%d").Length - 1;
        if (name.Length == 0 || name.Length > 256 || name.Any(char.IsControl) || (perLayer ? marks != 1 : marks != 0))
            throw new ModelLoadException(path, $"'{path}' has {key} \"{Shorten(name)}\"; it must be a tensor name{(perLayer ? " with one %d for the layer" : "")}.");
        return name;
    }

    private static string Shorten(string text) => Show(text, 40);

    /// <summary>Outside text as it may appear in a one-line message: control characters shown as '?', at most <paramref name="max"/> characters.</summary>
    private static string Show(string text, int max)
    {
        var shown = string.Create(Math.Min(text.Length, max), text, (span, t) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = char.IsControl(t[i]) ? '?' : t[i];
        });
        return text.Length <= max ? shown : shown + "…";
    }
}

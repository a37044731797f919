using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Llama;

/// <summary>
/// Turns a llama2.c checkpoint and tokenizer into a model directory: <c>model.onnx</c> (<see cref="LlamaGraph"/>),
/// <c>tokenizer.json</c> and <c>tokenizer_config.json</c> as Hugging Face's converter writes them
/// (<see cref="SentencePieceBin"/>), Hugging Face's <c>config.json</c> and
/// <c>generation_config.json</c>, and <c>manifest.json</c> with every file's SHA-256.
/// </summary>
public static class Llama2cImporter
{
    public const string Format = "llama2c";
    public const string ConfigFile = "config.json";
    public const string GenerationConfigFile = "generation_config.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";

    /// <summary>
    /// Reads both files and writes the directory. Bad input throws <see cref="ModelLoadException"/> whose one-line
    /// message names the file.
    /// </summary>
    public static ModelManifest Import(string checkpointPath, string tokenizerPath, string outDir, string? name = null, string role = "target")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(tokenizerPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        Llama2cCheckpoint checkpoint;
        IReadOnlyList<SentencePieceBin.Entry> tokenizer;
        try
        {
            checkpoint = Llama2cCheckpoint.Read(checkpointPath);
        }
        catch (InvalidDataException e)
        {
            throw new ModelLoadException(checkpointPath, e.Message, e);
        }

        try
        {
            tokenizer = SentencePieceBin.Read(tokenizerPath);
        }
        catch (TokenizerFormatException e)
        {
            throw new ModelLoadException(tokenizerPath, $"'{tokenizerPath}' (llama2.c tokenizer): {e.Problem}", e);
        }

        return Import(checkpoint, tokenizer, tokenizerPath, outDir, name ?? Path.GetFileNameWithoutExtension(checkpointPath), role);
    }

    /// <summary>
    /// Writes the directory for a parsed checkpoint and tokenizer (<see cref="SentencePieceBin.Parse"/>: ids 0, 1, 2
    /// are &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;). <paramref name="tokenizerName"/> names the tokenizer in errors.
    /// </summary>
    public static ModelManifest Import(Llama2cCheckpoint checkpoint, IReadOnlyList<SentencePieceBin.Entry> tokenizer, string tokenizerName, string outDir, string name, string role = "target")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var shape = checkpoint.Shape;
        if (tokenizer.Count != shape.VocabSize)
            throw new ModelLoadException(tokenizerName, $"'{tokenizerName}' holds {tokenizer.Count} tokens but the checkpoint's vocabulary has " +
                $"{shape.VocabSize}: it is not this model's tokenizer.");
        const int bos = 1, eos = 2;

        Directory.CreateDirectory(outDir);
        var external = LlamaGraph.Save(checkpoint, Path.Combine(outDir, TransformerModelBuilder.ModelFileName), name);
        using (var stream = File.Create(Path.Combine(outDir, TransformerModelBuilder.TokenizerFileName)))
            SentencePieceBin.WriteTokenizerJson(tokenizer, stream);
        SentencePieceBin.WriteTokenizerConfig(tokenizer, Path.Combine(outDir, TokenizerConfigFile), modelMaxLength: shape.SeqLen);
        // llama2.c's stories models end a story by predicting BOS (the start of the next one); its run.c stops there,
        // so BOS is a stop id beside EOS.
        int[] stops = [eos, bos];
        WriteJson(Path.Combine(outDir, ConfigFile), w =>
        {
            w.WriteString("_name_or_path", name);
            w.WriteStartArray("architectures"); w.WriteStringValue("LlamaForCausalLM"); w.WriteEndArray();
            w.WriteString("model_type", "llama");
            w.WriteNumber("hidden_size", shape.Dim);
            w.WriteNumber("intermediate_size", shape.HiddenDim);
            w.WriteNumber("num_hidden_layers", shape.Layers);
            w.WriteNumber("num_attention_heads", shape.Heads);
            w.WriteNumber("num_key_value_heads", shape.KvHeads);
            w.WriteNumber("head_dim", shape.HeadDim);
            w.WriteNumber("vocab_size", shape.VocabSize);
            w.WriteNumber("max_position_embeddings", shape.SeqLen);
            w.WriteNumber("rms_norm_eps", shape.RmsEpsilon);
            w.WriteNumber("rope_theta", shape.RopeTheta);
            w.WriteString("hidden_act", "silu");
            w.WriteBoolean("tie_word_embeddings", shape.SharedClassifier);
            w.WriteNumber("bos_token_id", bos);
            w.WriteNumber("eos_token_id", eos);
            w.WriteString("torch_dtype", "float32");
        });
        WriteJson(Path.Combine(outDir, GenerationConfigFile), w =>
        {
            w.WriteNumber("bos_token_id", bos);
            w.WriteStartArray("eos_token_id");
            foreach (var s in stops) w.WriteNumberValue(s);
            w.WriteEndArray();
        });

        var files = new Dictionary<string, string>
        {
            [ModelManifest.ModelFileKey] = TransformerModelBuilder.ModelFileName,
            [ModelManifest.TokenizerFileKey] = TransformerModelBuilder.TokenizerFileName,
            ["config"] = ConfigFile,
            ["generation_config"] = GenerationConfigFile,
            ["tokenizer_config"] = TokenizerConfigFile,
        };
        if (external is not null) files["model_data"] = external;
        var manifest = new ModelManifest
        {
            Kind = TransformerModelBuilder.Kind,
            Role = role,
            Name = name,
            VocabSize = shape.VocabSize,
            Tokenizer = TokenizerFactory.HuggingFace,
            Files = files,
            Sha256 = files.ToDictionary(f => f.Key, f => ModelDirectory.Sha256File(Path.Combine(outDir, f.Value))),
            Transformer = new TransformerConfig
            {
                Preset = Format, Layers = shape.Layers, Hidden = shape.Dim, Heads = shape.Heads, MaxPositions = shape.SeqLen, VocabSize = shape.VocabSize,
            },
        };
        File.WriteAllText(Path.Combine(outDir, ModelManifest.FileName), manifest.ToJson() + "\n");
        return manifest;
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> body)
    {
        using (var stream = File.Create(path))
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        File.AppendAllText(path, "\n");
    }
}

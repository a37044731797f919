using System.Text.Json;

namespace IotDsd.Inference.Models;

/// <summary>
/// A model's beginning- and end-of-sequence tokens, from the files Hugging Face keeps beside a model:
/// <c>generation_config.json</c> (first), <c>config.json</c> (<c>bos_token_id</c>, <c>eos_token_id</c>: a number or a
/// list) and <c>tokenizer_config.json</c> (<c>add_bos_token</c>; <c>bos_token</c>/<c>eos_token</c> by name, looked up
/// in <c>tokenizer.json</c>'s added tokens). BOS goes in front of a prompt when <c>add_bos_token</c> says so, or, where
/// that is not given, when <c>tokenizer.json</c>'s TemplateProcessing post-processor starts with it. Generation stops
/// at any of <see cref="Eos"/>. <see cref="Special"/> are the tokens never printed.
/// </summary>
public sealed record SpecialTokens(int? Bos, bool AddBos, IReadOnlyList<int> Eos, IReadOnlySet<int> Special)
{
    public static SpecialTokens None { get; } = new(null, false, [], new HashSet<int>());

    /// <summary>The prompt's ids with BOS in front where the model expects it.</summary>
    public int[] Prompt(ReadOnlySpan<int> encoded) =>
        AddBos && Bos is { } bos && (encoded.IsEmpty || encoded[0] != bos) ? [bos, .. encoded] : encoded.ToArray();

    /// <summary>Reads the files in <paramref name="dir"/>; missing files mean nothing is known. Bad JSON throws <see cref="ModelLoadException"/>.</summary>
    public static SpecialTokens Read(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        using var generation = Open(dir, "generation_config.json");
        using var config = Open(dir, "config.json");
        using var tokenizerConfig = Open(dir, "tokenizer_config.json");
        using var tokenizer = Open(dir, "tokenizer.json");

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        if (tokenizer?.RootElement is { ValueKind: JsonValueKind.Object } t && t.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in list.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String
                    || !a.TryGetProperty("id", out var id) || !id.TryGetInt32(out var i)) continue;
                added[c.GetString()!] = i;
                if (a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True) special.Add(i);
            }
        }

        int? bos = Ids(generation, "bos_token_id").Concat(Ids(config, "bos_token_id")).Cast<int?>().FirstOrDefault()
            ?? NamedId(tokenizerConfig, "bos_token", added);
        var eos = Ids(generation, "eos_token_id").ToList();
        if (eos.Count == 0) eos = Ids(config, "eos_token_id").ToList();
        if (eos.Count == 0 && NamedId(tokenizerConfig, "eos_token", added) is { } named) eos.Add(named);

        bool addBos;
        if (tokenizerConfig?.RootElement is { ValueKind: JsonValueKind.Object } tc && tc.TryGetProperty("add_bos_token", out var flag)
            && flag.ValueKind is JsonValueKind.True or JsonValueKind.False)
            addBos = flag.GetBoolean();
        else
            addBos = bos is { } b && TemplateStartsWith(tokenizer, b, added);
        foreach (var e in eos) special.Add(e);
        if (bos is { } bosId) special.Add(bosId);
        return new SpecialTokens(bos, addBos && bos is not null, eos.Distinct().ToArray(), special);
    }

    private static JsonDocument? Open(string dir, string file)
    {
        var path = Path.Combine(dir, file);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException(path, $"'{path}' is not readable JSON: {e.Message}", e);
        }
    }

    /// <summary>A number, or a list of numbers, under <paramref name="property"/>.</summary>
    private static IEnumerable<int> Ids(JsonDocument? doc, string property)
    {
        if (doc?.RootElement is not { ValueKind: JsonValueKind.Object } root || !root.TryGetProperty(property, out var value)) yield break;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var one) && one >= 0) yield return one;
        else if (value.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out var id) && id >= 0) yield return id;
            }
        }
    }

    /// <summary>A token named by string (or by {"content": ...}) in tokenizer_config.json, looked up in the added tokens.</summary>
    private static int? NamedId(JsonDocument? doc, string property, Dictionary<string, int> added)
    {
        if (doc?.RootElement is not { ValueKind: JsonValueKind.Object } root || !root.TryGetProperty(property, out var value)) return null;
        var name = value.ValueKind == JsonValueKind.String ? value.GetString()
            : value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
        return name is not null && added.TryGetValue(name, out var id) ? id : null;
    }

    private static bool TemplateStartsWith(JsonDocument? tokenizer, int bos, Dictionary<string, int> added)
    {
        if (tokenizer?.RootElement is not { ValueKind: JsonValueKind.Object } root || !root.TryGetProperty("post_processor", out var post)) return false;
        foreach (var processor in post.ValueKind == JsonValueKind.Object && post.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array
                     ? list.EnumerateArray().ToArray() : [post])
        {
            if (processor.ValueKind != JsonValueKind.Object || !processor.TryGetProperty("type", out var type) || type.GetString() != "TemplateProcessing") continue;
            if (!processor.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0) return false;
            var first = single[0];
            return first.ValueKind == JsonValueKind.Object && first.TryGetProperty("SpecialToken", out var st) && st.ValueKind == JsonValueKind.Object
                && st.TryGetProperty("id", out var name) && name.ValueKind == JsonValueKind.String
                && added.TryGetValue(name.GetString()!, out var id) && id == bos;
        }
        return false;
    }
}

/// <summary>A tokenizer whose decoded text leaves out a model's special tokens (BOS, EOS, padding ...).</summary>
public sealed class SpecialTokenFilter(Tokenizers.ITokenizer inner, IReadOnlySet<int> special) : Tokenizers.ITokenizer
{
    public Tokenizers.ITokenizer Inner { get; } = inner ?? throw new ArgumentNullException(nameof(inner));

    public int VocabSize => Inner.VocabSize;

    public int[] Encode(string text) => Inner.Encode(text);

    public Tokenizers.IStreamDecoder CreateStreamDecoder() => CreateStreamDecoder(atStart: false);

    public Tokenizers.IStreamDecoder CreateStreamDecoder(bool atStart) =>
        special.Count == 0 ? Inner.CreateStreamDecoder(atStart) : new Decoder(Inner.CreateStreamDecoder(atStart), special);

    private sealed class Decoder(Tokenizers.IStreamDecoder inner, IReadOnlySet<int> special) : Tokenizers.IStreamDecoder
    {
        public string Append(int token) => special.Contains(token) ? "" : inner.Append(token);

        public string Flush() => inner.Flush();
    }
}

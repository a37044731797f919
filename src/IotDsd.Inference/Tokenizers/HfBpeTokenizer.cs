using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model (GPT-2, Llama 2/3, Mistral, Qwen, TinyLlama, llama2.c
/// exports...), run through the whole pipeline as Hugging Face's own implementation runs it: added tokens split out
/// first, then the normalizer, the pre-tokenizer and the BPE model on the rest; decoding goes through the file's decoder
/// chain. <see cref="Encode(string)"/> returns ids without the post-processor's special tokens;
/// <see cref="Encode(string, bool)"/> adds them, and <see cref="BosTokenId"/> tells whether a BOS is expected.
/// A component this build does not implement is refused with a <see cref="TokenizerFormatException"/>.
/// </summary>
public sealed class HfBpeTokenizer : ITokenizer
{
    /// <summary>GPT-2's pre-tokenizer pattern, used when the file asks for ByteLevel with use_regex.</summary>
    public const string Gpt2Pattern = PreTokenizer.Gpt2Pattern;

    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly BpeModel _model;
    private readonly AddedTokenSplitter _raw;
    private readonly AddedTokenSplitter _normalized;
    private readonly DecoderPlan _decoder;
    private readonly byte[][] _tokenBytes;
    private readonly string?[] _tokens;
    private readonly bool[] _special;
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    private HfBpeTokenizer(Normalizer? normalizer, PreTokenizer? preTokenizer, BpeModel model, List<AddedToken> added, DecoderPlan decoder,
        int[] prefix, int[] suffix, int? eos)
    {
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _model = model;
        _decoder = decoder;
        _prefix = prefix;
        _suffix = suffix;
        EosTokenId = eos;
        AddedTokens = added;
        _raw = new AddedTokenSplitter(added.Where(a => !(a.Normalized && normalizer is not null)).Select(a => (a.Content, a)));
        _normalized = new AddedTokenSplitter(added.Where(a => a.Normalized && normalizer is not null).Select(a => (normalizer!.Normalize(a.Content), a)));

        int size = 0;
        foreach (var id in model.Vocab.Values) size = Math.Max(size, id + 1);
        foreach (var a in added) size = Math.Max(size, a.Id + 1);
        _tokens = new string?[size];
        _tokenBytes = new byte[size][];
        _special = new bool[size];
        foreach (var (token, id) in model.Vocab) _tokens[id] = token;
        foreach (var a in added) _tokens[a.Id] = a.Content;
        var addedIds = added.ToDictionary(a => a.Id);
        for (int i = 0; i < size; i++)
        {
            if (addedIds.TryGetValue(i, out var a))
            {
                _tokenBytes[i] = decoder.AddedTokenBytes(a.Content);
                _special[i] = a.Special;
            }
            else
            {
                _tokenBytes[i] = _tokens[i] is { } t ? decoder.TokenBytes(t) : [];
            }
        }
    }

    public int VocabSize => _tokens.Length;

    /// <summary>The added tokens (special or not) the file declares.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>The ids the post-processor puts before the text (a BOS such as <c>&lt;s&gt;</c>), or empty.</summary>
    public IReadOnlyList<int> SpecialPrefix => _prefix;

    /// <summary>The ids the post-processor puts after the text (an EOS some models append), or empty.</summary>
    public IReadOnlyList<int> SpecialSuffix => _suffix;

    /// <summary>
    /// The BOS the tokenizer puts before the text: from the post-processor's template (TemplateProcessing, or BERT's
    /// and RoBERTa's CLS) or, without one, from <c>tokenizer_config.json</c>'s <c>add_bos_token</c> and
    /// <c>bos_token</c>. Null when the text is not preceded by a special token.
    /// </summary>
    public int? BosTokenId => _prefix.Length > 0 ? _prefix[0] : null;

    /// <summary><c>tokenizer_config.json</c>'s <c>eos_token</c>, when it names a token of this vocabulary.</summary>
    public int? EosTokenId { get; }

    /// <summary>Whether <paramref name="id"/> is an added token marked special (skipped when streaming text).</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    /// <summary>The token string of <paramref name="id"/> as the vocabulary writes it, or null when unused.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : null;

    public int? TokenToId(string token)
    {
        foreach (var a in AddedTokens)
        {
            if (a.Content == token) return a.Id;
        }
        return _model.Vocab.TryGetValue(token, out var id) ? id : null;
    }

    /// <summary>The bytes token <paramref name="id"/> decodes to (after the per-token decoder steps).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => _tokenBytes[id];

    /// <summary>The ids of <paramref name="text"/>, without the post-processor's special tokens.</summary>
    public int[] Encode(string text) => Encode(text, addSpecialTokens: false);

    /// <summary>The ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/>, inside the post-processor's template.</summary>
    public int[] Encode(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_prefix);
        var sections = _raw.Split(text);
        var pieces = new List<Piece>();
        for (int s = 0; s < sections.Count; s++)
        {
            var section = sections[s];
            if (section.Token is { } t)
            {
                ids.Add(t.Id);
                continue;
            }
            if (section.Text.Length == 0) continue;
            var normalized = _normalizer?.Normalize(section.Text) ?? section.Text;
            if (normalized.Length == 0) continue;
            var subsections = _normalized.Split(normalized);
            for (int k = 0; k < subsections.Count; k++)
            {
                var sub = subsections[k];
                if (sub.Token is { } nt)
                {
                    ids.Add(nt.Id);
                    continue;
                }
                if (sub.Text.Length == 0) continue;
                pieces.Clear();
                pieces.Add(new Piece(sub.Text, s == 0 && k == 0));
                _preTokenizer?.Apply(pieces);
                foreach (var p in pieces) _model.Encode(p.Text, ids);
            }
        }
        if (addSpecialTokens) ids.AddRange(_suffix);
        return [.. ids];
    }

    /// <summary>Decodes a complete token list as Hugging Face's <c>decode</c> does (invalid UTF-8 becomes U+FFFD).</summary>
    public string Decode(ReadOnlySpan<int> tokens, bool skipSpecialTokens = false)
    {
        var decoder = new HfStreamDecoder(_tokenBytes, _special, _decoder, atStart: true, skipSpecialTokens);
        var text = new StringBuilder();
        foreach (var t in tokens) text.Append(decoder.Append(t));
        return text.Append(decoder.Flush()).ToString();
    }

    /// <summary>
    /// A decoder for generated tokens that continue text already shown (the prompt): special tokens are skipped, and
    /// the space a SentencePiece-style token carries is kept.
    /// </summary>
    public IStreamDecoder CreateStreamDecoder() => new HfStreamDecoder(_tokenBytes, _special, _decoder, atStart: false, skipSpecial: true);

    /// <summary>A stream decoder; <paramref name="atStart"/> when the first token begins the text (as <see cref="Decode"/>).</summary>
    public IStreamDecoder CreateStreamDecoder(bool atStart) => CreateStreamDecoder(atStart, skipSpecialTokens: true);

    public IStreamDecoder CreateStreamDecoder(bool atStart, bool skipSpecialTokens) => new HfStreamDecoder(_tokenBytes, _special, _decoder, atStart, skipSpecialTokens);

    /// <summary>
    /// Loads <paramref name="path"/> and, when it exists, the <c>tokenizer_config.json</c> beside it; throws a
    /// <see cref="TokenizerFormatException"/> naming the file and the problem.
    /// </summary>
    public static HfBpeTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] json;
        try
        {
            json = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException(path, $"cannot be read: {e.Message}", e);
        }
        var configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "tokenizer_config.json");
        byte[]? config = null;
        if (File.Exists(configPath))
        {
            try
            {
                config = File.ReadAllBytes(configPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new TokenizerFormatException(configPath, $"cannot be read: {e.Message}", e);
            }
        }
        return Parse(json, path, config, configPath);
    }

    /// <summary>Parses tokenizer.json text (and optionally tokenizer_config.json); <paramref name="name"/> names it in errors.</summary>
    public static HfBpeTokenizer Parse(ReadOnlySpan<byte> json, string name, ReadOnlySpan<byte> config = default, string configName = "tokenizer_config.json")
    {
        var read = new JsonRead(name);
        if (!System.Text.Unicode.Utf8.IsValid(json)) throw read.Error("is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(name, $"is not valid JSON ({e.Message.ReplaceLineEndings(" ")})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw read.Error("is not a tokenizer.json (the top level is not an object)");
            var modelElement = read.Get(root, "model", "tokenizer");
            if (JsonRead.IsAbsent(modelElement)) throw read.Error("is not a tokenizer.json (it has no \"model\")");
            var model = BpeModel.Parse(modelElement, read);
            var added = AddedTokenSplitter.Parse(root, read);
            var normalizer = Normalizer.Parse(read.Get(root, "normalizer", "tokenizer"), read);
            var preTokenizer = PreTokenizer.Parse(read.Get(root, "pre_tokenizer", "tokenizer"), read);
            var decoder = DecoderPlan.Parse(read.Get(root, "decoder", "tokenizer"), read);
            var lookup = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (t, id) in model.Vocab) lookup[t] = id;
            foreach (var a in added) lookup[a.Content] = a.Id;
            var template = PostProcessor.Parse(read.Get(root, "post_processor", "tokenizer"), read, lookup);

            var cfg = config.IsEmpty ? null : TokenizerConfig.Parse(config, configName, lookup);
            int[] prefix, suffix;
            if (template is not null)
            {
                (prefix, suffix) = template.Value;
            }
            else
            {
                prefix = cfg is { AddBos: true, Bos: int b } ? [b] : [];
                suffix = cfg is { AddEos: true, Eos: int e } ? [e] : [];
            }
            return new HfBpeTokenizer(normalizer, preTokenizer, model, added, decoder, prefix, suffix, cfg?.Eos);
        }
    }

    /// <summary>The GPT-2 byte-to-unicode table: the character that stands for byte <paramref name="b"/>.</summary>
    public static char ByteLevelChar(byte b) => ByteLevel.ByteToChar[b];

    /// <summary>
    /// Writes a byte-level BPE <c>tokenizer.json</c> whose token <c>b</c> is byte <c>b</c> (no merges): what
    /// <see cref="Transformer.TransformerModelBuilder"/> ships with its byte models.
    /// </summary>
    public static void WriteByteVocabulary(string path)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteStartArray("added_tokens");
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteEndObject();
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteStartObject("vocab");
        for (int b = 0; b < 256; b++) w.WriteNumber(ByteLevelChar((byte)b).ToString(), b);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

/// <summary>The special tokens a tokenizer.json post-processor wraps a single text in.</summary>
internal static class PostProcessor
{
    public static readonly string[] Known = ["TemplateProcessing", "ByteLevel", "BertProcessing", "RobertaProcessing", "Sequence"];

    /// <summary>(prefix, suffix) ids, or null when the post-processor adds none of its own (absent, or ByteLevel alone).</summary>
    public static (int[] Prefix, int[] Suffix)? Parse(JsonElement e, JsonRead read, IReadOnlyDictionary<string, int> lookup, string where = "post_processor")
    {
        if (JsonRead.IsAbsent(e)) return null;
        var type = read.Type(e, where);
        switch (type)
        {
            case "ByteLevel":
                return null;
            case "Sequence":
            {
                (int[], int[])? found = null;
                int i = 0;
                foreach (var p in read.Array(e, "processors", where))
                {
                    if (Parse(p, read, lookup, $"{where}.processors[{i++}]") is { } t) found = t;
                }
                return found;
            }
            case "BertProcessing":
            case "RobertaProcessing":
                return ([Pair(e, "cls", read, where, lookup)], [Pair(e, "sep", read, where, lookup)]);
            case "TemplateProcessing":
            {
                var specials = read.Get(e, "special_tokens", where);
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool seenSequence = false;
                int i = 0;
                foreach (var item in read.Array(e, "single", where))
                {
                    var itemWhere = $"{where}.single[{i++}]";
                    if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("Sequence", out _))
                    {
                        seenSequence = true;
                        continue;
                    }
                    if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("SpecialToken", out var st))
                        throw read.Error($"{itemWhere} is neither a SpecialToken nor a Sequence");
                    var name = read.String(st, "id", itemWhere + ".SpecialToken");
                    var ids = new List<int>();
                    if (specials.ValueKind == JsonValueKind.Object && specials.TryGetProperty(name, out var spec))
                    {
                        foreach (var id in read.Array(spec, "ids", $"{where}.special_tokens[\"{name}\"]"))
                        {
                            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out var v) || v < 0) throw read.Error($"{where}.special_tokens[\"{name}\"].ids holds a non-id");
                            ids.Add(v);
                        }
                    }
                    else if (lookup.TryGetValue(name, out var direct))
                    {
                        ids.Add(direct);
                    }
                    else
                    {
                        throw read.Error($"{itemWhere} names special token '{BpeModel.Shorten(name)}', which special_tokens does not define");
                    }
                    (seenSequence ? suffix : prefix).AddRange(ids);
                }
                return ([.. prefix], [.. suffix]);
            }
            default:
                throw read.Error($"unknown {where} type '{type}' (this build reads {string.Join(", ", Known)})");
        }
    }

    private static int Pair(JsonElement e, string name, JsonRead read, string where, IReadOnlyDictionary<string, int> lookup)
    {
        var v = read.Get(e, name, where);
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2 && v[1].ValueKind == JsonValueKind.Number && v[1].TryGetInt32(out var id) && id >= 0) return id;
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() >= 1 && v[0].ValueKind == JsonValueKind.String && lookup.TryGetValue(v[0].GetString()!, out var byName)) return byName;
        throw read.Error($"{where}.{name} must be [token, id]");
    }
}

/// <summary>What <c>tokenizer_config.json</c> says about BOS and EOS.</summary>
internal sealed record TokenizerConfig(bool AddBos, int? Bos, bool AddEos, int? Eos)
{
    public static TokenizerConfig Parse(ReadOnlySpan<byte> json, string name, IReadOnlyDictionary<string, int> lookup)
    {
        var read = new JsonRead(name);
        if (!System.Text.Unicode.Utf8.IsValid(json)) throw read.Error("is not valid UTF-8");
        try
        {
            using var doc = JsonDocument.Parse(json.ToArray());
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw read.Error("is not a tokenizer_config.json (the top level is not an object)");
            return new TokenizerConfig(read.Bool(root, "add_bos_token", "tokenizer_config", false), Token(root, "bos_token", read, lookup),
                read.Bool(root, "add_eos_token", "tokenizer_config", false), Token(root, "eos_token", read, lookup));
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(name, $"is not valid JSON ({e.Message.ReplaceLineEndings(" ")})", e);
        }
    }

    private static int? Token(JsonElement root, string name, JsonRead read, IReadOnlyDictionary<string, int> lookup)
    {
        var v = read.Get(root, name, "tokenizer_config");
        string? content = v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            JsonValueKind.Null or JsonValueKind.Undefined => null,
            _ => throw read.Error($"tokenizer_config.{name} must be a string or {{\"content\": ...}}"),
        };
        return content is not null && lookup.TryGetValue(content, out var id) ? id : null;
    }
}

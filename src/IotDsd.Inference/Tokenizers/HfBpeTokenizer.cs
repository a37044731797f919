using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model (GPT-2, Llama 3, Qwen and the like), encoded through
/// Microsoft.ML.Tokenizers. Byte-level vocabularies (the ByteLevel pre-tokenizer or decoder) and SentencePiece-style
/// ones (<c>▁</c> for spaces, <c>&lt;0xHH&gt;</c> byte fallback) are understood. Decoding maps every token to its
/// bytes, so streamed text never splits a multi-byte UTF-8 character.
/// </summary>
public sealed class HfBpeTokenizer : ITokenizer
{
    /// <summary>GPT-2's pre-tokenizer pattern, used when the file asks for ByteLevel with use_regex.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly byte[][] _tokenBytes;

    private HfBpeTokenizer(BpeTokenizer bpe, byte[][] tokenBytes)
    {
        _bpe = bpe;
        _tokenBytes = tokenBytes;
    }

    public int VocabSize => _tokenBytes.Length;

    /// <summary>The bytes token <paramref name="id"/> stands for.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => _tokenBytes[id];

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. _bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)];
    }

    /// <summary>Decodes a complete token list (invalid UTF-8 becomes U+FFFD).</summary>
    public string Decode(ReadOnlySpan<int> tokens)
    {
        var decoder = CreateStreamDecoder();
        var text = new StringBuilder();
        foreach (var t in tokens) text.Append(decoder.Append(t));
        return text.Append(decoder.Flush()).ToString();
    }

    public IStreamDecoder CreateStreamDecoder() => new Utf8StreamDecoder(_tokenBytes);

    /// <summary>Loads <paramref name="path"/>; throws <see cref="InvalidDataException"/> naming what is unsupported.</summary>
    public static HfBpeTokenizer Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || !model.TryGetProperty("type", out var type) || type.GetString() != "BPE")
            throw new InvalidDataException($"'{path}' is not a BPE tokenizer.json (model.type must be \"BPE\").");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var m))
        {
            foreach (var merge in m.EnumerateArray())
                merges.Add(merge.ValueKind == JsonValueKind.Array ? $"{merge[0].GetString()} {merge[1].GetString()}" : merge.GetString()!);
        }

        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var added))
        {
            foreach (var a in added.EnumerateArray()) special[a.GetProperty("content").GetString()!] = a.GetProperty("id").GetInt32();
        }

        bool byteLevel = HasType(root, "pre_tokenizer", "ByteLevel") || HasType(root, "decoder", "ByteLevel");
        string? pattern = SplitPattern(root.TryGetProperty("pre_tokenizer", out var pre) ? pre : default);
        if (pattern is null && byteLevel) pattern = Gpt2Pattern;
        string? unknown = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String ? unk.GetString() : null;

        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = byteLevel,
            SpecialTokens = special.Count == 0 ? null : special,
            PreTokenizer = pattern is null ? null : new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special.Count == 0 ? null : special),
            UnknownToken = unknown,
            FuseUnknownTokens = model.TryGetProperty("fuse_unk", out var fuse) && fuse.ValueKind == JsonValueKind.True,
        };
        var bpe = BpeTokenizer.Create(options);

        int size = 0;
        foreach (var id in vocab.Values) size = Math.Max(size, id + 1);
        foreach (var id in special.Values) size = Math.Max(size, id + 1);
        var bytes = new byte[size][];
        for (int i = 0; i < size; i++) bytes[i] = [];
        foreach (var (token, id) in vocab) bytes[id] = byteLevel ? ByteLevelBytes(token) : PieceBytes(token);
        foreach (var (token, id) in special) bytes[id] = Encoding.UTF8.GetBytes(token);
        return new HfBpeTokenizer(bpe, bytes);
    }

    private static bool HasType(JsonElement root, string property, string type)
    {
        if (!root.TryGetProperty(property, out var e) || e.ValueKind != JsonValueKind.Object) return false;
        if (e.TryGetProperty("type", out var t) && t.GetString() == type) return true;
        foreach (var listName in (string[])["pretokenizers", "decoders"])
        {
            if (e.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in list.EnumerateArray())
                {
                    if (item.TryGetProperty("type", out var it) && it.GetString() == type) return true;
                }
            }
        }
        return false;
    }

    /// <summary>The regex of a Split pre-tokenizer (alone or in a Sequence), if any.</summary>
    private static string? SplitPattern(JsonElement pre)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        if (pre.TryGetProperty("type", out var t) && t.GetString() == "Split" && pre.TryGetProperty("pattern", out var p))
            return p.TryGetProperty("Regex", out var r) ? r.GetString() : p.TryGetProperty("String", out var s) ? Regex.Escape(s.GetString()!) : null;
        if (pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in list.EnumerateArray())
            {
                if (SplitPattern(item) is { } found) return found;
            }
        }
        return null;
    }

    private static readonly Lazy<Dictionary<char, byte>> UnicodeToByte = new(() =>
    {
        var map = new Dictionary<char, byte>(256);
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255;
            map[printable ? (char)b : (char)(256 + extra++)] = (byte)b;
        }
        return map;
    });

    /// <summary>The GPT-2 byte-to-unicode table: the character that stands for byte <paramref name="b"/>.</summary>
    public static char ByteLevelChar(byte b)
    {
        foreach (var (c, v) in UnicodeToByte.Value)
        {
            if (v == b) return c;
        }
        throw new InvalidOperationException("unreachable");
    }

    private static byte[] ByteLevelBytes(string token)
    {
        var map = UnicodeToByte.Value;
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!map.TryGetValue(token[i], out bytes[i])) return Encoding.UTF8.GetBytes(token); // not byte-level text
        }
        return bytes;
    }

    private static byte[] PieceBytes(string token)
    {
        if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b))
            return [b];
        return Encoding.UTF8.GetBytes(token.Replace('\u2581', ' '));
    }

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

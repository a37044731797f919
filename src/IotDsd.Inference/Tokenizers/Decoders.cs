using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// A tokenizer.json decoder chain compiled for streaming: each token's text after the per-token steps (Replace,
/// ByteFallback, ByteLevel, Metaspace, Strip before Fuse) as bytes, plus what applies to the whole output (Strip after
/// Fuse, Metaspace's removal of the space it prepended). Concatenating the bytes and decoding them as UTF-8 gives the
/// same text as Hugging Face's decoders for every valid UTF-8 result.
/// </summary>
internal sealed class DecoderPlan
{
    public static readonly string[] Known = ["Sequence", "ByteLevel", "Metaspace", "ByteFallback", "Fuse", "Strip", "Replace"];

    private readonly List<Func<Token, Token>> _steps = [];
    private bool _byteLevel;
    private bool _fused;

    /// <summary>Character stripped from the start and end of the whole output, and how many at most.</summary>
    public char StripChar { get; private set; } = ' ';
    public int StripStart { get; private set; }
    public int StripStop { get; private set; }

    /// <summary>No decoder in the file: tokens are joined with spaces, as Hugging Face does.</summary>
    public bool JoinWithSpace { get; private set; }

    /// <summary>A token on its way through the chain: text, or bytes once a step has produced bytes.</summary>
    private readonly record struct Token(string? Text, byte[]? Bytes)
    {
        public static Token Of(string text) => new(text, null);
        public byte[] ToBytes() => Bytes ?? Encoding.UTF8.GetBytes(Text!);
    }

    public static DecoderPlan Parse(JsonElement e, JsonRead read)
    {
        var plan = new DecoderPlan();
        if (JsonRead.IsAbsent(e)) plan.JoinWithSpace = true;
        else plan.Add(e, read, "decoder");
        return plan;
    }

    private void Add(JsonElement e, JsonRead read, string where)
    {
        var type = read.Type(e, where);
        switch (type)
        {
            case "Sequence":
                int i = 0;
                foreach (var d in read.Array(e, "decoders", where)) Add(d, read, $"{where}.decoders[{i++}]");
                break;
            case "ByteLevel":
                _byteLevel = true;
                _steps.Add(t => t.Text is null ? t : new Token(null, ByteLevel.Decode(t.Text)));
                break;
            case "ByteFallback":
                _steps.Add(t => t.Text is { Length: 6 } s && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>'
                    && byte.TryParse(s.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out var b) ? new Token(null, [b]) : t);
                break;
            case "Replace":
            {
                var pattern = read.Pattern(e, where);
                var content = read.String(e, "content", where, "");
                _steps.Add(t => MapText(t, s => pattern.Replace(s, content)));
                break;
            }
            case "Metaspace":
            {
                var replacement = read.String(e, "replacement", where, "\u2581");
                if (replacement.Length == 0) throw read.Error($"{where}.replacement is empty");
                var scheme = read.OptionalString(e, "prepend_scheme", where) ?? (read.Bool(e, "add_prefix_space", where, true) ? "always" : "never");
                _steps.Add(t => MapText(t, s => s.Replace(replacement, " ", StringComparison.Ordinal)));
                if (scheme != "never")
                {
                    StripChar = ' ';
                    StripStart = Math.Max(StripStart, 1);
                }
                break;
            }
            case "Fuse":
                _fused = true;
                break;
            case "Strip":
            {
                var content = read.String(e, "content", where, " ");
                if (content.Length != 1) throw read.Error($"{where}.content must be one character");
                int start = read.Int(e, "start", where, 0), stop = read.Int(e, "stop", where, 0);
                if (start < 0 || stop < 0) throw read.Error($"{where}.start and stop must not be negative");
                if (_fused)
                {
                    StripChar = content[0];
                    StripStart = start;
                    StripStop = stop;
                }
                else
                {
                    char c = content[0];
                    _steps.Add(t => MapText(t, s =>
                    {
                        int a = 0, z = s.Length;
                        while (a < start && a < s.Length && s[a] == c) a++;
                        while (s.Length - z < stop && z > a && s[z - 1] == c) z--;
                        return s[a..z];
                    }));
                }
                break;
            }
            default:
                throw read.Error($"unknown {where} type '{type}' (this build reads {string.Join(", ", Known)})");
        }
    }

    private static Token MapText(Token t, Func<string, string> map)
    {
        if (t.Text is not null) return Token.Of(map(t.Text));
        try
        {
            var text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(t.Bytes!);
            return new Token(null, Encoding.UTF8.GetBytes(map(text)));
        }
        catch (DecoderFallbackException)
        {
            return t; // a partial character: left as bytes
        }
    }

    /// <summary>The bytes a vocabulary token stands for.</summary>
    public byte[] TokenBytes(string token)
    {
        var t = Token.Of(token);
        foreach (var step in _steps) t = step(t);
        return t.ToBytes();
    }

    /// <summary>The bytes an added token stands for: ByteLevel passes it through; other steps apply.</summary>
    public byte[] AddedTokenBytes(string content)
    {
        if (_byteLevel) return Encoding.UTF8.GetBytes(content);
        return TokenBytes(content);
    }
}

/// <summary>Streams a token sequence through a <see cref="DecoderPlan"/>: text is released only in whole characters.</summary>
internal sealed class HfStreamDecoder : IStreamDecoder
{
    private readonly byte[][] _tokenBytes;
    private readonly bool[] _special;
    private readonly DecoderPlan _plan;
    private readonly bool _atStart;
    private readonly bool _skipSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, throwOnInvalidBytes: false).GetDecoder();
    private readonly StringBuilder _heldEnd = new();
    private char[] _chars = new char[16];
    private int _stripLeft;
    private bool _any;

    public HfStreamDecoder(byte[][] tokenBytes, bool[] special, DecoderPlan plan, bool atStart, bool skipSpecial)
    {
        _tokenBytes = tokenBytes;
        _special = special;
        _plan = plan;
        _atStart = atStart;
        _skipSpecial = skipSpecial;
        Reset();
    }

    private void Reset()
    {
        _utf8.Reset();
        _heldEnd.Clear();
        _stripLeft = _atStart ? _plan.StripStart : 0;
        _any = !_atStart;
    }

    public string Append(int token)
    {
        if (token < 0) throw new ArgumentOutOfRangeException(nameof(token), token, "Tokens are non-negative.");
        // A model's vocabulary may be padded past the tokenizer's: such ids stand for no text.
        if (token >= _tokenBytes.Length || (_skipSpecial && _special[token])) return string.Empty;
        var text = Decode(_tokenBytes[token], flush: false);
        if (_plan.JoinWithSpace)
        {
            if (_any) text = " " + text;
            _any = true;
        }
        return Post(text);
    }

    public string Flush()
    {
        var text = Post(Decode([], flush: true));
        Reset();
        return text;
    }

    private string Decode(ReadOnlySpan<byte> bytes, bool flush)
    {
        int max = bytes.Length + 8;
        if (_chars.Length < max) _chars = new char[Math.Max(max, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }

    private string Post(string text)
    {
        if (text.Length == 0) return text;
        if (_stripLeft > 0)
        {
            int a = 0;
            while (a < text.Length && a < _stripLeft && text[a] == _plan.StripChar) a++;
            _stripLeft = a < text.Length ? 0 : _stripLeft - a;
            text = text[a..];
        }
        if (_plan.StripStop > 0)
        {
            text = _heldEnd.Append(text).ToString();
            _heldEnd.Clear();
            int z = text.Length;
            while (text.Length - z < _plan.StripStop && z > 0 && text[z - 1] == _plan.StripChar) z--;
            _heldEnd.Append(text, z, text.Length - z);
            text = text[..z];
        }
        return text;
    }
}

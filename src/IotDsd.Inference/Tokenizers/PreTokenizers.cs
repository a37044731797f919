using System.Globalization;
using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>One piece of pre-tokenized text; <see cref="AtStart"/> when it begins the whole input (Metaspace "first").</summary>
internal readonly record struct Piece(string Text, bool AtStart);

/// <summary>How a split treats the pieces its pattern matches (Hugging Face's SplitDelimiterBehavior).</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>A tokenizer.json pre-tokenizer: cuts normalized text into the pieces the model encodes one by one.</summary>
internal abstract class PreTokenizer
{
    public abstract void Apply(List<Piece> pieces);

    public static readonly string[] Known = ["Sequence", "ByteLevel", "Metaspace", "Split", "Digits", "Whitespace", "WhitespaceSplit", "Punctuation", "BertPreTokenizer"];

    /// <summary>GPT-2's pattern, which the ByteLevel pre-tokenizer applies when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Lazy<OnigRegex> Gpt2 = new(() => OnigRegex.Create(Gpt2Pattern));
    private static readonly Lazy<OnigRegex> Words = new(() => OnigRegex.Create(@"[\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+"));

    public static PreTokenizer? Parse(JsonElement e, JsonRead read, string where = "pre_tokenizer")
    {
        if (JsonRead.IsAbsent(e)) return null;
        var type = read.Type(e, where);
        switch (type)
        {
            case "Sequence":
                var list = new List<PreTokenizer>();
                int i = 0;
                foreach (var item in read.Array(e, "pretokenizers", where))
                {
                    if (Parse(item, read, $"{where}.pretokenizers[{i++}]") is { } p) list.Add(p);
                }
                return new SequencePreTokenizer(list);
            case "ByteLevel":
                return new ByteLevelPreTokenizer(read.Bool(e, "add_prefix_space", where, false), read.Bool(e, "use_regex", where, true) ? Gpt2.Value : null);
            case "Metaspace":
                return MetaspacePreTokenizer.FromJson(e, read, where);
            case "Split":
                return new SplitPreTokenizer(read.Pattern(e, where), Behavior(e, read, where, SplitBehavior.Isolated), read.Bool(e, "invert", where, false));
            case "Digits":
                return new CharSplitPreTokenizer(c => c is >= '0' and <= '9', read.Bool(e, "individual_digits", where, false) ? SplitBehavior.Isolated : SplitBehavior.Contiguous);
            case "Whitespace":
                return new SplitPreTokenizer(Words.Value, SplitBehavior.Removed, invert: true);
            case "WhitespaceSplit":
                return new CharSplitPreTokenizer(char.IsWhiteSpace, SplitBehavior.Removed);
            case "Punctuation":
                return new CharSplitPreTokenizer(IsPunctuation, Behavior(e, read, where, SplitBehavior.Isolated));
            case "BertPreTokenizer":
                return new SequencePreTokenizer([new CharSplitPreTokenizer(char.IsWhiteSpace, SplitBehavior.Removed), new CharSplitPreTokenizer(IsPunctuation, SplitBehavior.Isolated)]);
            default:
                throw read.Error($"unknown {where} type '{type}' (this build reads {string.Join(", ", Known)})");
        }
    }

    /// <summary>ASCII punctuation (every printable non-alphanumeric character) or a Unicode punctuation character.</summary>
    private static bool IsPunctuation(char c) => c < 128
        ? c is > ' ' and < '\x7F' && !char.IsAsciiLetterOrDigit(c)
        : CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    private static SplitBehavior Behavior(JsonElement e, JsonRead read, string where, SplitBehavior fallback)
    {
        var name = read.OptionalString(e, "behavior", where);
        if (name is null) return fallback;
        return Enum.TryParse<SplitBehavior>(name, ignoreCase: false, out var b) && Enum.IsDefined(b)
            ? b
            : throw read.Error($"{where}.behavior '{name}' is not one of {string.Join(", ", Enum.GetNames<SplitBehavior>())}");
    }

    /// <summary>
    /// Splits <paramref name="piece"/> at the given spans (sorted, not overlapping) the way Hugging Face's
    /// NormalizedString.split does; empty results are dropped.
    /// </summary>
    protected static void SplitInto(List<Piece> output, Piece piece, List<(int Start, int Length)> matches, SplitBehavior behavior, bool invert)
    {
        var text = piece.Text;
        // Alternating gaps and matches, each marked as a delimiter or not.
        var segments = new List<(int Start, int End, bool Delimiter)>();
        int at = 0;
        foreach (var (s, l) in matches)
        {
            if (l == 0) continue;
            if (s > at) segments.Add((at, s, invert));
            segments.Add((s, s + l, !invert));
            at = s + l;
        }
        if (at < text.Length) segments.Add((at, text.Length, invert));

        var result = new List<(int Start, int End)>();
        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach (var seg in segments)
                {
                    if (!seg.Delimiter) result.Add((seg.Start, seg.End));
                }
                break;
            case SplitBehavior.Isolated:
                foreach (var seg in segments) result.Add((seg.Start, seg.End));
                break;
            case SplitBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var seg in segments)
                {
                    if (seg.Delimiter && !previousMatch && result.Count > 0) result[^1] = (result[^1].Start, seg.End);
                    else result.Add((seg.Start, seg.End));
                    previousMatch = seg.Delimiter;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                bool previousMatch = false;
                for (int i = segments.Count - 1; i >= 0; i--)
                {
                    var seg = segments[i];
                    if (seg.Delimiter && !previousMatch && result.Count > 0) result[^1] = (seg.Start, result[^1].End);
                    else result.Add((seg.Start, seg.End));
                    previousMatch = seg.Delimiter;
                }
                result.Reverse();
                break;
            }
            case SplitBehavior.Contiguous:
            {
                bool previousMatch = false;
                foreach (var seg in segments)
                {
                    if (seg.Delimiter == previousMatch && result.Count > 0) result[^1] = (result[^1].Start, seg.End);
                    else result.Add((seg.Start, seg.End));
                    previousMatch = seg.Delimiter;
                }
                break;
            }
        }

        bool first = true;
        foreach (var (s, e) in result)
        {
            if (e <= s) continue;
            output.Add(new Piece(text[s..e], piece.AtStart && s == 0 && first));
            first = false;
        }
    }
}

internal sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizer> parts) : PreTokenizer
{
    public override void Apply(List<Piece> pieces)
    {
        foreach (var p in parts) p.Apply(pieces);
    }
}

internal sealed class SplitPreTokenizer(OnigRegex pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Apply(List<Piece> pieces)
    {
        var input = pieces.ToArray();
        pieces.Clear();
        foreach (var p in input) SplitInto(pieces, p, pattern.Matches(p.Text), behavior, invert);
    }
}

/// <summary>A split where every character the predicate accepts is a match of its own.</summary>
internal sealed class CharSplitPreTokenizer(Func<char, bool> match, SplitBehavior behavior) : PreTokenizer
{
    public override void Apply(List<Piece> pieces)
    {
        var input = pieces.ToArray();
        pieces.Clear();
        foreach (var p in input)
        {
            var matches = new List<(int, int)>();
            for (int i = 0; i < p.Text.Length; i++)
            {
                if (match(p.Text[i])) matches.Add((i, 1));
            }
            SplitInto(pieces, p, matches, behavior, invert: false);
        }
    }
}

internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, OnigRegex? regex) : PreTokenizer
{
    public override void Apply(List<Piece> pieces)
    {
        var input = pieces.ToArray();
        pieces.Clear();
        foreach (var p in input)
        {
            var piece = addPrefixSpace && !p.Text.StartsWith(' ') ? p with { Text = " " + p.Text } : p;
            if (regex is null)
            {
                pieces.Add(piece);
            }
            else
            {
                SplitInto(pieces, piece, regex.Matches(piece.Text), SplitBehavior.Isolated, invert: false);
            }
        }
        for (int i = 0; i < pieces.Count; i++) pieces[i] = pieces[i] with { Text = ByteLevel.Encode(pieces[i].Text) };
    }
}

internal sealed class MetaspacePreTokenizer(string replacement, string scheme, bool split) : PreTokenizer
{
    public static MetaspacePreTokenizer FromJson(JsonElement e, JsonRead read, string where)
    {
        var replacement = read.String(e, "replacement", where, "\u2581");
        if (replacement.Length == 0) throw read.Error($"{where}.replacement is empty");
        var scheme = read.OptionalString(e, "prepend_scheme", where)
            ?? (read.Bool(e, "add_prefix_space", where, true) ? "always" : "never");
        if (scheme is not ("always" or "first" or "never")) throw read.Error($"{where}.prepend_scheme '{scheme}' is not always, first or never");
        return new MetaspacePreTokenizer(replacement, scheme, read.Bool(e, "split", where, true));
    }

    public override void Apply(List<Piece> pieces)
    {
        var input = pieces.ToArray();
        pieces.Clear();
        foreach (var p in input)
        {
            var text = p.Text.Replace(" ", replacement, StringComparison.Ordinal);
            if (!text.StartsWith(replacement, StringComparison.Ordinal) && (scheme == "always" || (scheme == "first" && p.AtStart)))
                text = replacement + text;
            var piece = p with { Text = text };
            if (!split)
            {
                pieces.Add(piece);
                continue;
            }
            var matches = new List<(int, int)>();
            for (int i = text.IndexOf(replacement, StringComparison.Ordinal); i >= 0; i = text.IndexOf(replacement, i + replacement.Length, StringComparison.Ordinal))
                matches.Add((i, replacement.Length));
            SplitInto(pieces, piece, matches, SplitBehavior.MergedWithNext, invert: false);
        }
    }
}

/// <summary>GPT-2's reversible mapping between bytes and printable characters.</summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildTable();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);

    private static char[] BuildTable()
    {
        var table = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255;
            table[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return table;
    }

    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>The bytes a byte-level token stands for; a character outside the table stands for its own UTF-8.</summary>
    public static byte[] Decode(string token)
    {
        var bytes = new List<byte>(token.Length);
        for (int i = 0; i < token.Length; i++)
        {
            if (CharToByte.TryGetValue(token[i], out var b))
            {
                bytes.Add(b);
            }
            else
            {
                int width = char.IsSurrogatePair(token, i) ? 2 : 1;
                bytes.AddRange(Encoding.UTF8.GetBytes(token.Substring(i, width)));
                i += width - 1;
            }
        }
        return [.. bytes];
    }
}

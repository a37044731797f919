using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// A tokenizer.json regular expression (written for Oniguruma, which matches code points) run by .NET's engine (which
/// matches UTF-16 code units). For text holding characters outside the Basic Multilingual Plane, the pattern runs over a
/// stand-in string where each such character is one BMP character of the same Unicode general category, so that
/// <c>\p{L}</c>, <c>\p{N}</c>, <c>\s</c> and the like classify it as Oniguruma does; matches map back to the original.
/// </summary>
internal sealed class OnigRegex
{
    /// <summary>Longest a single match may take: a tokenizer file's pattern is outside input.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    private readonly Regex _regex;

    private OnigRegex(Regex regex) => _regex = regex;

    public static OnigRegex Create(string pattern) =>
        new(new Regex(Translate(pattern), RegexOptions.CultureInvariant, MatchTimeout));

    /// <summary>
    /// Oniguruma syntax .NET lacks: possessive quantifiers (<c>?+</c>, <c>*+</c>, <c>++</c>, <c>{n,m}+</c>, as in
    /// tiktoken-style patterns) become greedy ones, as Hugging Face's JavaScript implementation reads them; the
    /// patterns that use them are written so that both give the same pieces.
    /// </summary>
    internal static string Translate(string pattern)
    {
        var sb = new StringBuilder(pattern.Length);
        int classDepth = 0;
        bool afterQuantifier = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                sb.Append(c).Append(pattern[++i]);
                afterQuantifier = false;
                continue;
            }
            if (classDepth > 0)
            {
                if (c == '[') classDepth++;
                else if (c == ']') classDepth--;
                sb.Append(c);
                afterQuantifier = false;
                continue;
            }
            switch (c)
            {
                case '[':
                    classDepth = 1;
                    sb.Append(c);
                    // A ']' right after '[' or '[^' is a literal.
                    if (i + 1 < pattern.Length && pattern[i + 1] == '^') sb.Append(pattern[++i]);
                    if (i + 1 < pattern.Length && pattern[i + 1] == ']') sb.Append(pattern[++i]);
                    afterQuantifier = false;
                    continue;
                case '(' when i + 1 < pattern.Length && pattern[i + 1] == '?':
                    sb.Append("(?");
                    i++;
                    afterQuantifier = false;
                    continue;
                case '+' when afterQuantifier:
                    afterQuantifier = false; // possessive: dropped
                    continue;
                case '*' or '+' or '?':
                    sb.Append(c);
                    afterQuantifier = true;
                    continue;
                case '{':
                    int close = pattern.IndexOf('}', i);
                    if (close > i && IsCount(pattern.AsSpan(i + 1, close - i - 1)))
                    {
                        sb.Append(pattern, i, close - i + 1);
                        i = close;
                        afterQuantifier = true;
                        continue;
                    }
                    break;
            }
            sb.Append(c);
            afterQuantifier = false;
        }
        return sb.ToString();
    }

    private static bool IsCount(ReadOnlySpan<char> inside)
    {
        if (inside.IsEmpty) return false;
        foreach (var ch in inside)
        {
            if (!(char.IsAsciiDigit(ch) || ch == ',')) return false;
        }
        return true;
    }

    public static OnigRegex Literal(string text) => Create(Regex.Escape(text));

    /// <summary>The (start, length) of every match, in UTF-16 units of <paramref name="text"/>; empty matches included.</summary>
    public List<(int Start, int Length)> Matches(string text)
    {
        var result = new List<(int, int)>();
        if (!HasSurrogates(text))
        {
            for (var m = _regex.Match(text); m.Success; m = m.NextMatch()) result.Add((m.Index, m.Length));
            return result;
        }

        // Stand-in string: one char per code point; starts[i] is where code point i begins in the original.
        var stand = new StringBuilder(text.Length);
        var starts = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            starts.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                stand.Append(StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))));
                i += 2;
            }
            else
            {
                stand.Append(text[i]);
                i++;
            }
        }
        starts.Add(text.Length);
        for (var m = _regex.Match(stand.ToString()); m.Success; m = m.NextMatch())
        {
            int s = starts[m.Index];
            result.Add((s, starts[m.Index + m.Length] - s));
        }
        return result;
    }

    public string Replace(string text, string replacement)
    {
        var matches = Matches(text);
        if (matches.Count == 0) return text;
        var sb = new StringBuilder(text.Length);
        int at = 0;
        foreach (var (s, l) in matches)
        {
            sb.Append(text, at, s - at).Append(replacement);
            at = s + l;
        }
        return sb.Append(text, at, text.Length - at).ToString();
    }

    private static bool HasSurrogates(string text)
    {
        foreach (var c in text)
        {
            if (char.IsSurrogate(c)) return true;
        }
        return false;
    }

    /// <summary>A BMP character of the given category, outside ASCII and whitespace.</summary>
    private static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\uA779',
        UnicodeCategory.LowercaseLetter => '\uA77A',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\uA000',
        UnicodeCategory.NonSpacingMark => '\u1DC0',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u2460',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u2E02',
        UnicodeCategory.FinalQuotePunctuation => '\u2E03',
        UnicodeCategory.OtherPunctuation => '\u2E2E',
        UnicodeCategory.MathSymbol => '\u2200',
        UnicodeCategory.CurrencySymbol => '\u20A0',
        UnicodeCategory.ModifierSymbol => '\u02C2',
        UnicodeCategory.OtherSymbol => '\u2600',
        UnicodeCategory.Format => '\uFFF9',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378', // unassigned
    };
}

using System.Globalization;
using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>A tokenizer.json normalizer: rewrites a stretch of input text before it is split and encoded.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static readonly string[] Known = ["Sequence", "Prepend", "Replace", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "BertNormalizer"];

    public static Normalizer? Parse(JsonElement e, JsonRead read, string where = "normalizer")
    {
        if (JsonRead.IsAbsent(e)) return null;
        var type = read.Type(e, where);
        switch (type)
        {
            case "Sequence":
                var list = new List<Normalizer>();
                int i = 0;
                foreach (var item in read.Array(e, "normalizers", where))
                {
                    if (Parse(item, read, $"{where}.normalizers[{i++}]") is { } n) list.Add(n);
                }
                return new SequenceNormalizer(list);
            case "Prepend":
                return new PrependNormalizer(read.String(e, "prepend", where));
            case "Replace":
                return new ReplaceNormalizer(read.Pattern(e, where), read.String(e, "content", where, ""));
            case "NFC": return new UnicodeFormNormalizer(NormalizationForm.FormC);
            case "NFD": return new UnicodeFormNormalizer(NormalizationForm.FormD);
            case "NFKC": return new UnicodeFormNormalizer(NormalizationForm.FormKC);
            case "NFKD": return new UnicodeFormNormalizer(NormalizationForm.FormKD);
            case "Lowercase": return new LowercaseNormalizer();
            case "Strip":
                return new StripNormalizer(read.Bool(e, "strip_left", where, true), read.Bool(e, "strip_right", where, true));
            case "StripAccents": return new StripAccentsNormalizer();
            case "BertNormalizer":
                return new BertNormalizer(read.Bool(e, "clean_text", where, true), read.Bool(e, "handle_chinese_chars", where, true),
                    read.Get(e, "strip_accents", where).ValueKind == JsonValueKind.True, read.Bool(e, "lowercase", where, true));
            default:
                throw read.Error($"unknown {where} type '{type}' (this build reads {string.Join(", ", Known)})");
        }
    }
}

internal sealed class SequenceNormalizer(IReadOnlyList<Normalizer> parts) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var p in parts) text = p.Normalize(text);
        return text;
    }
}

internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

internal sealed class ReplaceNormalizer(OnigRegex pattern, string content) : Normalizer
{
    public override string Normalize(string text) => pattern.Replace(text, content);
}

internal sealed class UnicodeFormNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, form);
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}

internal sealed class StripAccentsNormalizer : Normalizer
{
    public override string Normalize(string text) => RemoveMarks(text);

    public static string RemoveMarks(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            var cat = CharUnicodeInfo.GetUnicodeCategory(text, i);
            int width = char.IsSurrogatePair(text, i) ? 2 : 1;
            if (cat is not (UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark))
                sb.Append(text, i, width);
            i += width - 1;
        }
        return sb.ToString();
    }
}

/// <summary>BERT's: control characters dropped, whitespace made spaces, CJK ideographs spaced, optional accents and case.</summary>
internal sealed class BertNormalizer(bool cleanText, bool chinese, bool stripAccents, bool lowercase) : Normalizer
{
    public override string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = CodePoints.At(text, i, out int width);
            var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
            if (cleanText)
            {
                if (cp == 0 || cp == 0xFFFD || (cat is UnicodeCategory.Control or UnicodeCategory.Format && cp is not ('\t' or '\n' or '\r'))) { i += width - 1; continue; }
                if (cp is '\t' or '\n' or '\r' || cat == UnicodeCategory.SpaceSeparator) { sb.Append(' '); i += width - 1; continue; }
            }
            bool cjk = chinese && cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
                or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
            if (cjk) sb.Append(' ');
            sb.Append(text, i, width);
            if (cjk) sb.Append(' ');
            i += width - 1;
        }
        var s = sb.ToString();
        if (stripAccents) s = StripAccentsNormalizer.RemoveMarks(UnicodeNormalization.Normalize(s, NormalizationForm.FormD));
        if (lowercase) s = s.ToLowerInvariant();
        return s;
    }
}

internal static class CodePoints
{
    /// <summary>The code point at <paramref name="i"/> (a lone surrogate stands for itself) and its UTF-16 width.</summary>
    public static int At(string s, int i, out int width)
    {
        if (char.IsSurrogatePair(s, i))
        {
            width = 2;
            return char.ConvertToUtf32(s[i], s[i + 1]);
        }
        width = 1;
        return s[i];
    }
}

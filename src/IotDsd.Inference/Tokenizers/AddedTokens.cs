using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>A tokenizer.json <c>added_tokens</c> entry: text that becomes one id before any other processing.</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>One stretch of input: plain text, or an added token.</summary>
internal readonly record struct Section(string Text, AddedToken? Token);

/// <summary>Finds added tokens in text, leftmost-longest, with their lstrip/rstrip/single_word rules.</summary>
internal sealed class AddedTokenSplitter
{
    private readonly Dictionary<char, (string Content, AddedToken Token)[]> _byFirst;

    public AddedTokenSplitter(IEnumerable<(string Content, AddedToken Token)> tokens)
    {
        _byFirst = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirst.Count == 0;

    public static List<AddedToken> Parse(JsonElement root, JsonRead read)
    {
        var list = new List<AddedToken>();
        var added = read.Get(root, "added_tokens", "tokenizer");
        if (JsonRead.IsAbsent(added)) return list;
        if (added.ValueKind != JsonValueKind.Array) throw read.Error("added_tokens must be an array");
        int i = 0;
        foreach (var a in added.EnumerateArray())
        {
            var where = $"added_tokens[{i++}]";
            int id = read.Int(a, "id", where);
            if (id is < 0 or >= 1 << 24) throw read.Error($"{where}.id {id} is out of range");
            list.Add(new AddedToken(id, read.String(a, "content", where), read.Bool(a, "special", where, false), read.Bool(a, "normalized", where, !read.Bool(a, "special", where, false)),
                read.Bool(a, "lstrip", where, false), read.Bool(a, "rstrip", where, false), read.Bool(a, "single_word", where, false)));
        }
        return list;
    }

    public List<Section> Split(string text)
    {
        var sections = new List<Section>();
        if (IsEmpty)
        {
            sections.Add(new Section(text, null));
            return sections;
        }
        int start = 0;
        for (int i = 0; i < text.Length;)
        {
            var match = MatchAt(text, i);
            if (match is null)
            {
                i++;
                continue;
            }
            if (i > start) sections.Add(new Section(text[start..i], null));
            sections.Add(new Section(match.Value.Content, match.Value.Token));
            i += match.Value.Content.Length;
            start = i;
        }
        if (start < text.Length) sections.Add(new Section(text[start..], null));

        for (int k = 0; k < sections.Count; k++)
        {
            if (sections[k].Token is not { } t) continue;
            if (t.LStrip && k > 0 && sections[k - 1].Token is null) sections[k - 1] = new Section(sections[k - 1].Text.TrimEnd(), null);
            if (t.RStrip && k + 1 < sections.Count && sections[k + 1].Token is null) sections[k + 1] = new Section(sections[k + 1].Text.TrimStart(), null);
        }
        return sections;
    }

    private (string Content, AddedToken Token)? MatchAt(string text, int i)
    {
        if (!_byFirst.TryGetValue(text[i], out var candidates)) return null;
        foreach (var c in candidates)
        {
            if (string.CompareOrdinal(text, i, c.Content, 0, c.Content.Length) != 0 || i + c.Content.Length > text.Length) continue;
            if (c.Token.SingleWord)
            {
                int end = i + c.Content.Length;
                if ((i > 0 && IsWordChar(text[i - 1])) || (end < text.Length && IsWordChar(text[end]))) continue;
            }
            return c;
        }
        return null;
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_' || char.IsSurrogate(c);
}

using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// Hugging Face's BPE model: a word is split into characters (or, with <c>byte_fallback</c>, the <c>&lt;0xHH&gt;</c>
/// tokens of a character missing from the vocabulary), then the adjacent pair with the lowest merge rank is merged
/// until none is left, leftmost first among equal ranks. Also <c>ignore_merges</c> (a word in the vocabulary is one
/// token), <c>continuing_subword_prefix</c>, <c>end_of_word_suffix</c>, <c>unk_token</c> and <c>fuse_unk</c>.
/// </summary>
internal sealed class BpeModel
{
    private const int CacheLimit = 50_000;
    private const int MaxCachedLength = 256;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Id)> _merges;
    private readonly int[] _byteIds;
    private readonly int? _unk;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly string? _prefix;
    private readonly string? _suffix;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private BpeModel(Dictionary<string, int> vocab, Dictionary<long, (int, int)> merges, int? unk, bool fuseUnk, bool byteFallback, bool ignoreMerges, string? prefix, string? suffix)
    {
        _vocab = vocab;
        _merges = merges;
        _unk = unk;
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        _prefix = prefix;
        _suffix = suffix;
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++) _byteIds[b] = vocab.TryGetValue(ByteToken((byte)b), out var id) ? id : -1;
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    public static string ByteToken(byte b) => string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>");

    public static BpeModel Parse(JsonElement model, JsonRead read)
    {
        const string where = "model";
        var type = read.Type(model, where);
        if (type != "BPE") throw read.Error($"model type '{type}' is not supported (this build reads BPE models)");
        var vocabElement = read.Get(model, "vocab", where);
        if (vocabElement.ValueKind != JsonValueKind.Object) throw read.Error("model.vocab must be an object of token: id");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabElement.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out var id) || id < 0 || id >= 1 << 24)
                throw read.Error($"model.vocab[\"{Shorten(p.Name)}\"] is not an id between 0 and {(1 << 24) - 1}");
            vocab[p.Name] = id;
        }

        string? prefix = NonEmpty(read.OptionalString(model, "continuing_subword_prefix", where));
        string? suffix = NonEmpty(read.OptionalString(model, "end_of_word_suffix", where));
        var merges = new Dictionary<long, (int, int)>();
        var mergesElement = read.Get(model, "merges", where);
        if (!JsonRead.IsAbsent(mergesElement))
        {
            if (mergesElement.ValueKind != JsonValueKind.Array) throw read.Error("model.merges must be an array");
            int rank = 0;
            foreach (var m in mergesElement.EnumerateArray())
            {
                string left, right;
                if (m.ValueKind == JsonValueKind.String)
                {
                    var s = m.GetString()!;
                    int space = s.IndexOf(' ', StringComparison.Ordinal);
                    if (space < 0 || s.IndexOf(' ', space + 1) >= 0) throw read.Error($"model.merges[{rank}] \"{Shorten(s)}\" is not two tokens separated by one space");
                    left = s[..space];
                    right = s[(space + 1)..];
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                {
                    left = m[0].GetString()!;
                    right = m[1].GetString()!;
                }
                else
                {
                    throw read.Error($"model.merges[{rank}] is neither \"a b\" nor [\"a\", \"b\"]");
                }
                if (!vocab.TryGetValue(left, out var l)) throw read.Error($"model.merges[{rank}]: '{Shorten(left)}' is not in the vocabulary");
                if (!vocab.TryGetValue(right, out var r)) throw read.Error($"model.merges[{rank}]: '{Shorten(right)}' is not in the vocabulary");
                var merged = left + (prefix is not null && right.StartsWith(prefix, StringComparison.Ordinal) ? right[prefix.Length..] : right);
                if (!vocab.TryGetValue(merged, out var id)) throw read.Error($"model.merges[{rank}]: the merged token '{Shorten(merged)}' is not in the vocabulary");
                merges.TryAdd(Key(l, r), (rank, id));
                rank++;
            }
        }

        var unkName = read.OptionalString(model, "unk_token", where);
        int? unk = null;
        if (unkName is not null)
        {
            if (!vocab.TryGetValue(unkName, out var u)) throw read.Error($"model.unk_token '{Shorten(unkName)}' is not in the vocabulary");
            unk = u;
        }
        var dropout = read.Get(model, "dropout", where);
        if (dropout.ValueKind == JsonValueKind.Number && !(dropout.TryGetDouble(out var rate) && rate == 0))
            throw read.Error("model.dropout is set: BPE dropout is for training and makes encoding random; set it to null");
        return new BpeModel(vocab, merges, unk, read.Bool(model, "fuse_unk", where, false), read.Bool(model, "byte_fallback", where, false),
            read.Bool(model, "ignore_merges", where, false), prefix, suffix);
    }

    private static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    internal static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "...";

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-tokenized word.</summary>
    public void Encode(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }
        if (word.Length <= MaxCachedLength && _cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = Merge(word);
        if (word.Length <= MaxCachedLength)
        {
            if (_cache.Count >= CacheLimit) _cache.Clear();
            _cache.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    private int[] Merge(string word)
    {
        var ids = new List<int>(word.Length);
        bool lastWasUnk = false;
        for (int i = 0; i < word.Length;)
        {
            int width = char.IsSurrogatePair(word, i) ? 2 : 1;
            var ch = word.Substring(i, width);
            bool isFirst = i == 0;
            bool isLast = i + width == word.Length;
            i += width;
            var s = ch;
            if (_prefix is not null && !isFirst) s = _prefix + s;
            if (_suffix is not null && isLast) s += _suffix;
            if (_vocab.TryGetValue(s, out var id))
            {
                ids.Add(id);
                lastWasUnk = false;
                continue;
            }
            if (_byteFallback)
            {
                var bytes = Encoding.UTF8.GetBytes(ch);
                if (bytes.All(b => _byteIds[b] >= 0))
                {
                    foreach (var b in bytes) ids.Add(_byteIds[b]);
                    lastWasUnk = false;
                    continue;
                }
            }
            if (_unk is int unk)
            {
                if (!(_fuseUnk && lastWasUnk)) ids.Add(unk);
                lastWasUnk = true;
            }
        }
        if (ids.Count < 2 || _merges.Count == 0) return [.. ids];

        // Symbols in a linked list; a priority queue of candidate merges ordered by (rank, position).
        int n = ids.Count;
        var symbol = ids.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int k = 0; k < n; k++)
        {
            prev[k] = k - 1;
            next[k] = k + 1 < n ? k + 1 : -1;
            alive[k] = true;
        }
        var queue = new PriorityQueue<(int Pos, int Id), long>();
        for (int k = 0; k + 1 < n; k++)
        {
            if (_merges.TryGetValue(Key(symbol[k], symbol[k + 1]), out var m)) queue.Enqueue((k, m.Id), ((long)m.Rank << 32) | (uint)k);
        }
        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(Key(symbol[pos], symbol[right]), out var m) || m.Id != top.Id) continue;
            symbol[pos] = m.Id;
            alive[right] = false;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            if (prev[pos] >= 0 && _merges.TryGetValue(Key(symbol[prev[pos]], symbol[pos]), out var before))
                queue.Enqueue((prev[pos], before.Id), ((long)before.Rank << 32) | (uint)prev[pos]);
            if (next[pos] >= 0 && _merges.TryGetValue(Key(symbol[pos], symbol[next[pos]]), out var after))
                queue.Enqueue((pos, after.Id), ((long)after.Rank << 32) | (uint)pos);
        }
        var result = new List<int>(n);
        for (int k = 0; k >= 0; k = next[k]) result.Add(symbol[k]);
        return [.. result];
    }
}

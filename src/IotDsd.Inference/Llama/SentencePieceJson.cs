using System.Text.Encodings.Web;
using System.Text.Json;

namespace IotDsd.Inference.Llama;

/// <summary>
/// Writes a SentencePiece BPE vocabulary as a Hugging Face <c>tokenizer.json</c>, as Hugging Face writes Llama 2's:
/// BPE with <c>byte_fallback</c> and <c>fuse_unk</c>, the normalizer Sequence[Prepend "▁", Replace " " → "▁"], no
/// pre-tokenizer, a TemplateProcessing post-processor that puts BOS in front, the decoder Sequence[Replace "▁" → " ",
/// ByteFallback, Fuse, Strip one leading space], and <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> as special
/// added tokens. Merges are derived from the scores as Hugging Face's SentencePiece converter derives them: every
/// split of a piece into two pieces of the vocabulary, ordered by the merged piece's score (highest first).
/// </summary>
public static class SentencePieceJson
{
    public const string Unk = "<unk>";
    public const string Bos = "<s>";
    public const string Eos = "</s>";

    /// <summary>Writes <paramref name="path"/> for the pieces and scores of <paramref name="tokenizer"/>.</summary>
    public static void Write(string path, Llama2cTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        using var stream = File.Create(path);
        Write(stream, tokenizer);
    }

    public static void Write(Stream stream, Llama2cTokenizer tokenizer)
    {
        var pieces = tokenizer.Pieces;
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Count; i++) ids[pieces[i]] = i;

        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach (var special in (string[])[Unk, Bos, Eos])
        {
            if (!ids.TryGetValue(special, out var id)) continue;
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", special);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartObject("normalizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("normalizers");
        w.WriteStartObject(); w.WriteString("type", "Prepend"); w.WriteString("prepend", "\u2581"); w.WriteEndObject();
        w.WriteStartObject(); w.WriteString("type", "Replace"); WritePattern(w, " "); w.WriteString("content", "\u2581"); w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteNull("pre_tokenizer");

        if (ids.TryGetValue(Bos, out var bos))
        {
            w.WriteStartObject("post_processor");
            w.WriteString("type", "TemplateProcessing");
            w.WriteStartArray("single");
            WriteSpecial(w, Bos); WriteSequence(w, "A");
            w.WriteEndArray();
            w.WriteStartArray("pair");
            WriteSpecial(w, Bos); WriteSequence(w, "A"); WriteSpecial(w, Bos); WriteSequence(w, "B");
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            w.WriteStartObject(Bos);
            w.WriteString("id", Bos);
            w.WriteStartArray("ids"); w.WriteNumberValue(bos); w.WriteEndArray();
            w.WriteStartArray("tokens"); w.WriteStringValue(Bos); w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("post_processor");
        }

        w.WriteStartObject("decoder");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("decoders");
        w.WriteStartObject(); w.WriteString("type", "Replace"); WritePattern(w, "\u2581"); w.WriteString("content", " "); w.WriteEndObject();
        w.WriteStartObject(); w.WriteString("type", "ByteFallback"); w.WriteEndObject();
        w.WriteStartObject(); w.WriteString("type", "Fuse"); w.WriteEndObject();
        w.WriteStartObject(); w.WriteString("type", "Strip"); w.WriteString("content", " "); w.WriteNumber("start", 1); w.WriteNumber("stop", 0); w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        if (ids.ContainsKey(Unk)) w.WriteString("unk_token", Unk); else w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", true);
        w.WriteBoolean("byte_fallback", true);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int i = 0; i < pieces.Count; i++) w.WriteNumber(pieces[i], i);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (left, right) in Merges(tokenizer, ids))
        {
            w.WriteStartArray();
            w.WriteStringValue(left);
            w.WriteStringValue(right);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>The merges in rank order: pairs of pieces whose concatenation is a piece, by that piece's score, highest first.</summary>
    public static List<(string Left, string Right)> Merges(Llama2cTokenizer tokenizer, Dictionary<string, int> ids)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(ids);
        var lookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        var merges = new List<(string Left, string Right, float Score, int Order)>();
        for (int id = 0; id < tokenizer.Count; id++)
        {
            var piece = tokenizer.Pieces[id];
            var local = new List<(string, string, int, int)>();
            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue;
                if (lookup.TryGetValue(piece.AsSpan(0, split), out var l) && lookup.TryGetValue(piece.AsSpan(split), out var r))
                    local.Add((piece[..split], piece[split..], l, r));
            }

            local.Sort((a, b) => a.Item3 != b.Item3 ? a.Item3.CompareTo(b.Item3) : a.Item4.CompareTo(b.Item4));
            foreach (var (left, right, _, _) in local) merges.Add((left, right, tokenizer.Scores[id], merges.Count));
        }

        // Stable: equal scores keep the order above.
        merges.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Order.CompareTo(b.Order));
        return [.. merges.Select(m => (m.Left, m.Right))];
    }

    private static void WritePattern(Utf8JsonWriter w, string text)
    {
        w.WriteStartObject("pattern");
        w.WriteString("String", text);
        w.WriteEndObject();
    }

    private static void WriteSpecial(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteStartObject("SpecialToken");
        w.WriteString("id", id);
        w.WriteNumber("type_id", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSequence(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteStartObject("Sequence");
        w.WriteString("id", id);
        w.WriteNumber("type_id", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

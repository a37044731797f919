using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// llama2.c's <c>tokenizer.bin</c> (for example stories260K's <c>tok512.bin</c>): int32 max_token_length, then per
/// token a float32 score, an int32 byte length and the piece's UTF-8 bytes, spaces written as ' ', BOS and EOS as
/// "\n&lt;s&gt;\n" and "\n&lt;/s&gt;\n". <see cref="WriteTokenizerJson"/> turns it into the Hugging Face
/// <c>tokenizer.json</c> that Hugging Face's SentencePiece converter writes for a Llama tokenizer (BPE with byte
/// fallback, Metaspace with prepend_scheme "first", BOS from the template), with merges recovered from the scores.
/// </summary>
public static class SentencePieceBin
{
    /// <summary>One vocabulary entry: the piece (spaces as U+2581, ids 1 and 2 as &lt;s&gt; and &lt;/s&gt;) and its score.</summary>
    public readonly record struct Entry(string Piece, float Score);

    /// <summary>Reads <paramref name="path"/>; with <paramref name="vocabSize"/>, exactly that many entries.</summary>
    public static IReadOnlyList<Entry> Read(string path, int? vocabSize = null)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException(path, $"cannot be read: {e.Message}", e);
        }
        return Parse(data, path, vocabSize);
    }

    public static IReadOnlyList<Entry> Parse(ReadOnlySpan<byte> data, string name, int? vocabSize = null)
    {
        if (data.Length < 4) throw new TokenizerFormatException(name, "is shorter than its 4-byte header (not a llama2.c tokenizer)");
        int maxLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxLength is <= 0 or > 1 << 16) throw new TokenizerFormatException(name, $"declares a maximum token length of {maxLength} (not a llama2.c tokenizer)");
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        var entries = new List<Entry>();
        int at = 4;
        while (at < data.Length && (vocabSize is null || entries.Count < vocabSize))
        {
            int id = entries.Count;
            if (data.Length - at < 8) throw new TokenizerFormatException(name, $"is truncated in token {id} (offset {at})");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data[at..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(data[(at + 4)..]);
            if (length < 0 || length > maxLength) throw new TokenizerFormatException(name, $"token {id} claims {length} bytes, outside 0..{maxLength}");
            if (data.Length - at - 8 < length) throw new TokenizerFormatException(name, $"is truncated in token {id} (offset {at})");
            if (!float.IsFinite(score)) throw new TokenizerFormatException(name, $"token {id} has a score that is not a finite number");
            string text;
            try
            {
                text = utf8.GetString(data.Slice(at + 8, length));
            }
            catch (DecoderFallbackException)
            {
                throw new TokenizerFormatException(name, $"token {id} is not valid UTF-8");
            }
            at += 8 + length;
            text = id switch
            {
                1 => "<s>",
                2 => "</s>",
                _ => text.Replace(' ', '\u2581'),
            };
            entries.Add(new Entry(text, score));
        }
        if (vocabSize is int n && entries.Count < n) throw new TokenizerFormatException(name, $"holds {entries.Count} tokens, not the model's {n}");
        if (entries.Count < 3) throw new TokenizerFormatException(name, "holds fewer than the 3 tokens <unk>, <s>, </s>");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            if (!seen.Add(e.Piece)) throw new TokenizerFormatException(name, $"holds the piece '{BpeModel.Shorten(e.Piece)}' twice");
        }
        return entries;
    }

    /// <summary>
    /// The merges Hugging Face's SentencePiece extractor derives: for every piece, each split into two pieces of the
    /// vocabulary (ordered by their ids), all sorted by the piece's score, highest first, stably.
    /// </summary>
    public static IReadOnlyList<(string Left, string Right)> Merges(IReadOnlyList<Entry> entries)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < entries.Count; i++) vocab[entries[i].Piece] = i;
        var merges = new List<(string Left, string Right, float Score)>();
        foreach (var e in entries)
        {
            var local = new List<(string, string, float)>();
            var piece = e.Piece;
            for (int k = 1; k < piece.Length; k++)
            {
                if (char.IsLowSurrogate(piece[k])) continue; // split between code points only
                var l = piece[..k];
                var r = piece[k..];
                if (vocab.ContainsKey(l) && vocab.ContainsKey(r)) local.Add((l, r, e.Score));
            }
            merges.AddRange(local.OrderBy(m => vocab[m.Item1]).ThenBy(m => vocab[m.Item2]));
        }
        return [.. merges.OrderByDescending(m => m.Score).Select(m => (m.Left, m.Right))];
    }

    /// <summary>Converts llama2.c's <paramref name="tokenizerBin"/> into a Hugging Face tokenizer.json at <paramref name="outPath"/>.</summary>
    public static void WriteTokenizerJson(string tokenizerBin, string outPath, int? vocabSize = null)
    {
        var entries = Read(tokenizerBin, vocabSize);
        using var stream = File.Create(outPath);
        WriteTokenizerJson(entries, stream);
    }

    public static void WriteTokenizerJson(IReadOnlyList<Entry> entries, Stream output)
    {
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        for (int id = 0; id < 3; id++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", entries[id].Piece);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Metaspace");
        w.WriteString("replacement", "\u2581");
        w.WriteString("prepend_scheme", "first");
        w.WriteBoolean("split", false);
        w.WriteEndObject();
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        Special(w, entries[1].Piece, 0);
        Sequence(w, "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        Special(w, entries[1].Piece, 0);
        Sequence(w, "A", 0);
        Special(w, entries[1].Piece, 1);
        Sequence(w, "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(entries[1].Piece);
        w.WriteString("id", entries[1].Piece);
        w.WriteStartArray("ids");
        w.WriteNumberValue(1);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(entries[1].Piece);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartObject("decoder");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("decoders");
        w.WriteStartObject();
        w.WriteString("type", "Replace");
        w.WriteStartObject("pattern");
        w.WriteString("String", "\u2581");
        w.WriteEndObject();
        w.WriteString("content", " ");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "ByteFallback");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Fuse");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Strip");
        w.WriteString("content", " ");
        w.WriteNumber("start", 1);
        w.WriteNumber("stop", 0);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteString("unk_token", entries[0].Piece);
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", true);
        w.WriteBoolean("byte_fallback", true);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int i = 0; i < entries.Count; i++) w.WriteNumber(entries[i].Piece, i);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (l, r) in Merges(entries))
        {
            w.WriteStartArray();
            w.WriteStringValue(l);
            w.WriteStringValue(r);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>
    /// The <c>tokenizer_config.json</c> that goes with it: BOS added, EOS not (as Llama's); with
    /// <paramref name="modelMaxLength"/>, the model's context as <c>model_max_length</c>.
    /// </summary>
    public static void WriteTokenizerConfig(IReadOnlyList<Entry> entries, string outPath, int? modelMaxLength = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        using (var stream = File.Create(outPath))
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            WriteTokenizerConfig(entries, w, modelMaxLength);
        }
        File.AppendAllText(outPath, "\n");
    }

    private static void WriteTokenizerConfig(IReadOnlyList<Entry> entries, Utf8JsonWriter w, int? modelMaxLength)
    {
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", true);
        w.WriteBoolean("add_eos_token", false);
        w.WriteString("bos_token", entries[1].Piece);
        w.WriteString("eos_token", entries[2].Piece);
        w.WriteString("unk_token", entries[0].Piece);
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteBoolean("legacy", false);
        w.WriteString("tokenizer_class", "LlamaTokenizer");
        if (modelMaxLength is int max) w.WriteNumber("model_max_length", max);
        w.WriteEndObject();
    }

    private static void Special(Utf8JsonWriter w, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("SpecialToken");
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void Sequence(Utf8JsonWriter w, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("Sequence");
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

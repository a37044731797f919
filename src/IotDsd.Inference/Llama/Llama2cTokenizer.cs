using System.Buffers.Binary;
using System.Text;

namespace IotDsd.Inference.Llama;

/// <summary>
/// llama2.c's tokenizer file (<c>tokenizer.bin</c>, <c>tok512.bin</c>, ...): int32 max_token_length, then per token a
/// float32 score, an int32 byte length and the UTF-8 bytes. llama2.c's exporter writes SentencePiece pieces with "▁"
/// replaced by a space, and BOS/EOS as "\n&lt;s&gt;\n" and "\n&lt;/s&gt;\n"; <see cref="Pieces"/> gives them back
/// in SentencePiece's own spelling.
/// </summary>
public sealed class Llama2cTokenizer
{
    public const char Metaspace = '\u2581';

    private Llama2cTokenizer(string[] pieces, float[] scores, int maxTokenLength)
    {
        Pieces = pieces;
        Scores = scores;
        MaxTokenLength = maxTokenLength;
    }

    /// <summary>Each token's SentencePiece piece ("▁" for a space, "&lt;0xHH&gt;" for a byte, "&lt;s&gt;" ...).</summary>
    public IReadOnlyList<string> Pieces { get; }

    /// <summary>Each token's merge score (higher merges first).</summary>
    public IReadOnlyList<float> Scores { get; }

    public int MaxTokenLength { get; }
    public int Count => Pieces.Count;

    /// <summary>Reads <paramref name="path"/>; throws <see cref="InvalidDataException"/> with a one-line reason naming the file.</summary>
    public static Llama2cTokenizer Read(string path)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"cannot read llama2.c tokenizer '{path}': {e.Message}", e);
        }

        return Parse(data, path);
    }

    /// <summary>Parses tokenizer bytes: every token up to the end of the data. <paramref name="name"/> names the file in errors.</summary>
    public static Llama2cTokenizer Parse(ReadOnlySpan<byte> data, string name)
    {
        if (data.Length < 4) throw new InvalidDataException($"'{name}' is not a llama2.c tokenizer: it is shorter than its 4-byte header.");
        int max = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (max is < 1 or > 1024) throw new InvalidDataException($"'{name}' is not a llama2.c tokenizer: max_token_length {max} is outside 1..1024.");
        var pieces = new List<string>();
        var scores = new List<float>();
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        int at = 4;
        while (at < data.Length)
        {
            int id = pieces.Count;
            if (data.Length - at < 8) throw new InvalidDataException($"'{name}' is truncated inside token {id}'s header.");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data[at..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(data[(at + 4)..]);
            at += 8;
            if (!float.IsFinite(score)) throw new InvalidDataException($"'{name}': token {id} has a score that is not a finite number.");
            if (length < 0 || length > max) throw new InvalidDataException($"'{name}': token {id} is {length} bytes long, outside 0..{max} (max_token_length).");
            if (data.Length - at < length) throw new InvalidDataException($"'{name}' is truncated inside token {id}'s bytes.");
            string text;
            try
            {
                text = utf8.GetString(data.Slice(at, length));
            }
            catch (DecoderFallbackException)
            {
                throw new InvalidDataException($"'{name}': token {id} is not valid UTF-8.");
            }

            at += length;
            pieces.Add(text switch
            {
                "\n<s>\n" => "<s>",
                "\n</s>\n" => "</s>",
                _ => text.Replace(' ', Metaspace),
            });
            scores.Add(score);
        }

        if (pieces.Count == 0) throw new InvalidDataException($"'{name}' holds no tokens.");
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Count; i++)
        {
            if (!seen.TryAdd(pieces[i], i)) throw new InvalidDataException($"'{name}': token {i} repeats the piece of token {seen[pieces[i]]}.");
        }

        return new Llama2cTokenizer([.. pieces], [.. scores], max);
    }
}

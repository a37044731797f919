using System.Security.Cryptography;
using System.Text;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Models;

/// <summary>
/// What a tokenizer's vocabulary is, as a short digest: SHA-256 over the text of every id below the count, in id
/// order. Two models share a vocabulary when their digests agree; sizes may still differ by padding ids that no
/// tokenizer produces (Qwen's 151,936 and 152,064 logits over one 151,665-token vocabulary).
/// </summary>
public static class VocabularyIdentity
{
    /// <summary>
    /// Ids a Hugging Face <c>tokenizer.json</c> can produce: one past the highest id of its model vocabulary and its
    /// added tokens (special tokens included), read from the file itself; 0 when the file says nothing readable.
    /// </summary>
    public static int TokenizerSize(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var document = System.Text.Json.JsonDocument.Parse(stream, new System.Text.Json.JsonDocumentOptions { MaxDepth = 64 });
            var root = document.RootElement;
            if (root.ValueKind != System.Text.Json.JsonValueKind.Object) return 0;
            long top = -1;
            if (root.TryGetProperty("model", out var model) && model.ValueKind == System.Text.Json.JsonValueKind.Object
                && model.TryGetProperty("vocab", out var vocab))
            {
                if (vocab.ValueKind == System.Text.Json.JsonValueKind.Object)
                {
                    foreach (var entry in vocab.EnumerateObject())
                        if (entry.Value.TryGetInt64(out var id)) top = Math.Max(top, id);
                }
                else if (vocab.ValueKind == System.Text.Json.JsonValueKind.Array) top = vocab.GetArrayLength() - 1; // Unigram: [piece, score] by id
            }
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == System.Text.Json.JsonValueKind.Array)
            {
                foreach (var token in added.EnumerateArray())
                    if (token.ValueKind == System.Text.Json.JsonValueKind.Object && token.TryGetProperty("id", out var id) && id.TryGetInt64(out var v)) top = Math.Max(top, v);
            }
            return top is >= 0 and < int.MaxValue ? (int)top + 1 : 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            return 0;
        }
    }

    /// <summary>Digest of the first <paramref name="count"/> ids of <paramref name="tokenizer"/> (16 hex digits).</summary>
    public static string Compute(ITokenizer tokenizer, int count)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        count = Math.Min(count, tokenizer.VocabSize);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> header = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(header, count);
        hash.AppendData(header);
        var decoder = tokenizer.CreateStreamDecoder();
        var buffer = new byte[256];
        for (int id = 0; id < count; id++)
        {
            var text = decoder.Append(id) + decoder.Flush();
            int length = Encoding.UTF8.GetByteCount(text);
            if (length + 4 > buffer.Length) buffer = new byte[2 * (length + 4)];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(buffer, length);
            Encoding.UTF8.GetBytes(text, buffer.AsSpan(4));
            hash.AppendData(buffer, 0, length + 4);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }
}

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

using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace IotDsd.Inference.Models;

/// <summary>
/// What a Hugging Face <c>tokenizer.json</c>'s vocabulary is: how many ids it can produce, and a short digest of the
/// token text of every id in order (SHA-256 of the model vocabulary and the added tokens as the file spells them,
/// independent of how this build encodes or decodes). Two models share a vocabulary when their digests agree; their
/// logits rows may still differ by padding ids no tokenizer produces (Qwen's 151,936 and 152,064 over one
/// 151,665-id tokenizer).
/// </summary>
public static class VocabularyIdentity
{
    /// <summary>
    /// Reads <paramref name="path"/>: <c>Size</c> is one past the highest id of its vocabulary and added tokens
    /// (special tokens included), <c>Digest</c> covers the ids below <paramref name="limit"/> (or all); both 0/null when
    /// the file says nothing readable.
    /// </summary>
    public static (int Size, string? Digest) Read(string path, int limit = int.MaxValue)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var document = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 64 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (0, null);
            var tokens = new Dictionary<long, string>();
            if (root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object && model.TryGetProperty("vocab", out var vocab))
            {
                if (vocab.ValueKind == JsonValueKind.Object)
                {
                    foreach (var entry in vocab.EnumerateObject())
                        if (entry.Value.TryGetInt64(out var id) && id >= 0) tokens[id] = entry.Name;
                }
                else if (vocab.ValueKind == JsonValueKind.Array) // Unigram: [piece, score] by id
                {
                    long id = 0;
                    foreach (var entry in vocab.EnumerateArray())
                    {
                        if (entry.ValueKind == JsonValueKind.Array && entry.GetArrayLength() > 0 && entry[0].ValueKind == JsonValueKind.String)
                            tokens[id] = entry[0].GetString()!;
                        id++;
                    }
                }
            }
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            {
                foreach (var token in added.EnumerateArray())
                {
                    if (token.ValueKind == JsonValueKind.Object && token.TryGetProperty("id", out var id) && id.TryGetInt64(out var v) && v >= 0
                        && token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                        tokens[v] = content.GetString()!;
                }
            }
            if (tokens.Count == 0) return (0, null);
            long top = tokens.Keys.Max();
            if (top >= int.MaxValue) return (0, null);
            int size = (int)top + 1;
            return (size, Digest(tokens, Math.Min(size, limit)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException)
        {
            return (0, null);
        }
    }

    private static string Digest(Dictionary<long, string> tokens, int count)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, count);
        hash.AppendData(length);
        for (long id = 0; id < count; id++)
        {
            // An id the file does not name is a gap (length -1), distinct from an empty token.
            var bytes = tokens.TryGetValue(id, out var text) ? Encoding.UTF8.GetBytes(text) : null;
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, bytes?.Length ?? -1);
            hash.AppendData(length);
            if (bytes is not null) hash.AppendData(bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }
}

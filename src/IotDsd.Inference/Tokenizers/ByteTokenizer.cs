using System.Text;

namespace IotDsd.Inference.Tokenizers;

/// <summary>UTF-8 bytes as tokens: 256 ids, one per byte value.</summary>
public sealed class ByteTokenizer : ITokenizer
{
    public static readonly ByteTokenizer Instance = new();

    public int VocabSize => 256;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    /// <summary>Decodes a complete token list (invalid bytes become U+FFFD).</summary>
    public string Decode(ReadOnlySpan<int> tokens)
    {
        var bytes = new byte[tokens.Length];
        for (int i = 0; i < tokens.Length; i++) bytes[i] = ToByte(tokens[i]);
        return Encoding.UTF8.GetString(bytes);
    }

    public IStreamDecoder CreateStreamDecoder() => new Utf8StreamDecoder();

    internal static byte ToByte(int token) =>
        (uint)token < 256 ? (byte)token : throw new ArgumentOutOfRangeException(nameof(token), token, "Byte tokens are 0..255.");
}

/// <summary>
/// Incremental UTF-8 decoding: holds back an incomplete multi-byte sequence; invalid bytes become U+FFFD.
/// </summary>
public sealed class Utf8StreamDecoder : IStreamDecoder
{
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private readonly char[] _chars = new char[8];

    public string Append(int token)
    {
        ReadOnlySpan<byte> one = [ByteTokenizer.ToByte(token)];
        int n = _decoder.GetChars(one, _chars, flush: false);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }

    public string Flush()
    {
        int n = _decoder.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        _decoder.Reset();
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }
}

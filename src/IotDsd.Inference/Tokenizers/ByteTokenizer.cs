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
/// Tokens are bytes by default; <see cref="Utf8StreamDecoder(IReadOnlyList{byte[]})"/> maps each token to its bytes.
/// </summary>
public sealed class Utf8StreamDecoder : IStreamDecoder
{
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private readonly IReadOnlyList<byte[]>? _tokenBytes;
    private char[] _chars = new char[8];

    public Utf8StreamDecoder()
    {
    }

    /// <summary>A decoder for tokens that stand for byte strings: token <c>t</c> is <c>tokenBytes[t]</c>.</summary>
    public Utf8StreamDecoder(IReadOnlyList<byte[]> tokenBytes)
    {
        _tokenBytes = tokenBytes ?? throw new ArgumentNullException(nameof(tokenBytes));
    }

    public string Append(int token)
    {
        if (_tokenBytes is null)
        {
            ReadOnlySpan<byte> one = [ByteTokenizer.ToByte(token)];
            return AppendBytes(one);
        }
        if (token < 0) throw new ArgumentOutOfRangeException(nameof(token), token, "Tokens are non-negative.");
        // A model's vocabulary may be padded past the tokenizer's: such ids stand for no text.
        return token < _tokenBytes.Count ? AppendBytes(_tokenBytes[token]) : string.Empty;
    }

    /// <summary>Adds raw UTF-8 bytes; returns the characters they complete.</summary>
    public string AppendBytes(ReadOnlySpan<byte> bytes)
    {
        int max = bytes.Length + 4;
        if (_chars.Length < max) _chars = new char[Math.Max(max, _chars.Length * 2)];
        int n = _decoder.GetChars(bytes, _chars, flush: false);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }

    public string Flush()
    {
        int n = _decoder.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        _decoder.Reset();
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }
}

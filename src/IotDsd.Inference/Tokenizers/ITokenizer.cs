namespace IotDsd.Inference.Tokenizers;

/// <summary>Turns text into token ids and back.</summary>
public interface ITokenizer
{
    int VocabSize { get; }

    int[] Encode(string text);

    /// <summary>A decoder for one generation's token stream, continuing a prompt already shown.</summary>
    IStreamDecoder CreateStreamDecoder();

    /// <summary>
    /// As <see cref="CreateStreamDecoder()"/>; <paramref name="atStart"/> says no text was shown before the stream (an
    /// empty prompt), so a decoder that strips a leading space from a whole text (SentencePiece's) strips it here too.
    /// </summary>
    IStreamDecoder CreateStreamDecoder(bool atStart) => CreateStreamDecoder();
}

/// <summary>
/// Decodes a token stream incrementally without splitting a character: text that is not complete yet is held
/// back until a later token completes it (or <see cref="Flush"/> gives up on it).
/// </summary>
public interface IStreamDecoder
{
    /// <summary>Adds one token; returns the text it completes (possibly empty).</summary>
    string Append(int token);

    /// <summary>Returns whatever is held back (an incomplete sequence becomes U+FFFD) and resets.</summary>
    string Flush();
}

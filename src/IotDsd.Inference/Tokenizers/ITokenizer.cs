namespace IotDsd.Inference.Tokenizers;

/// <summary>Turns text into token ids and back.</summary>
public interface ITokenizer
{
    int VocabSize { get; }

    int[] Encode(string text);

    /// <summary>A decoder for one generation's token stream.</summary>
    IStreamDecoder CreateStreamDecoder();
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

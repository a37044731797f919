namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// A tokenizer file that cannot be used: malformed, or naming a component this build does not implement. The message
/// is one line naming the file and the problem.
/// </summary>
public sealed class TokenizerFormatException : Exception
{
    public TokenizerFormatException(string file, string problem, Exception? inner = null)
        : base($"{file}: {problem}", inner)
    {
        File = file;
        Problem = problem;
    }

    /// <summary>The file (or the name the text was given) that holds the problem.</summary>
    public string File { get; }

    /// <summary>The problem, without the file name.</summary>
    public string Problem { get; }
}

namespace IotDsd.Core.Adaptive;

/// <summary>
/// A verifier's forward-pass cost as a line in the tokens a pass feeds, all its sessions together: fitted by the
/// verifier over its own passes (decayed least squares, half-life <see cref="HalfLife"/> passes) and sent with every
/// verdict and streamed chunk, so that each device's round-shape controller prices a round at the verifier's real
/// marginal cost per token (docs/protocol.md §6). A device cannot fit this line itself: it sees only the passes its
/// own rounds ride in, which are all of about one size. Not thread-safe: the verifier's pass loop owns it.
/// </summary>
public sealed class PassCost
{
    /// <summary>Passes after which one weighs half.</summary>
    public const int HalfLife = 256;

    private readonly DecayedLine _line = new(Math.Pow(0.5, 1.0 / HalfLife));

    /// <summary>Records a pass of <paramref name="tokens"/> tokens that took <paramref name="ms"/>.</summary>
    public void Add(int tokens, double ms)
    {
        if (tokens > 0 && double.IsFinite(ms) && ms >= 0)
        {
            _line.Add(tokens, ms);
        }
    }

    /// <summary>
    /// Before any real pass: a warm-up pass, then passes of 1 and 16 tokens of a throwaway sequence of
    /// <paramref name="model"/>, so that the line exists from the verifier's first open (<c>SessionOpened[7–8]</c>);
    /// real passes outweigh them soon. A model with too short a context for 18 tokens is left unmeasured.
    /// </summary>
    public void Measure(Models.ILanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        try
        {
            using var sequence = model.CreateSequence();
            var logits = new float[model.VocabSize];
            sequence.Feed([0], logits);
            foreach (var n in (int[])[1, 16])
            {
                var tokens = Enumerable.Range(1, n).Select(i => i % model.VocabSize).ToArray();
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                sequence.Feed(tokens, logits);
                Add(n, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
        }
        catch (ArgumentException)
        {
            // Too short a context: the line comes from the first rounds instead.
        }
    }

    /// <summary>The line now: a fixed part per pass and a part per token, ms (both 0 before any pass). Where the points
    /// do not rise with size (one size seen, or noise), the cost is taken as proportional to the tokens.</summary>
    public (float FixedMs, float PerTokenMs) Line
    {
        get
        {
            var (a, b) = _line.Fit();
            return ((float)a, (float)b);
        }
    }
}

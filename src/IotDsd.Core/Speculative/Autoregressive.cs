using IotDsd.Core.Models;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>
/// Plain autoregressive decoding with one model: the reference every lossless check compares against. Greedy output
/// is what speculative greedy must reproduce byte for byte; sampled output has the distribution speculative sampling
/// must reproduce.
/// </summary>
public static class Autoregressive
{
    /// <summary>Generates <paramref name="maxTokens"/> tokens after <paramref name="prompt"/>.</summary>
    public static int[] Generate(
        ILanguageModel model, ReadOnlySpan<int> prompt, SamplingParams sampling, ulong seed, string sessionId, int maxTokens, Action<int>? onToken = null) =>
        Generate(model, prompt, sampling, seed, sessionId, maxTokens, [], onToken);

    /// <summary>
    /// Generates up to <paramref name="maxTokens"/> tokens after <paramref name="prompt"/>, stopping after the first
    /// of <paramref name="stopTokens"/> (which is the last token returned).
    /// </summary>
    public static int[] Generate(
        ILanguageModel model, ReadOnlySpan<int> prompt, SamplingParams sampling, ulong seed, string sessionId, int maxTokens, IReadOnlyCollection<int> stopTokens, Action<int>? onToken = null)
    {
        ArgumentNullException.ThrowIfNull(stopTokens);
        if (prompt.IsEmpty)
        {
            throw new ArgumentException("the prompt must hold at least one token", nameof(prompt));
        }

        var vocab = model.VocabSize;
        var logits = new float[vocab];
        var probs = new float[vocab];
        var output = new int[maxTokens];
        var session = DeterministicRandom.SessionKey(sessionId);
        using var sequence = model.CreateSequence();
        sequence.Feed(prompt, logits);
        for (var i = 0; i < maxTokens; i++)
        {
            int token;
            if (sampling.IsGreedy)
            {
                token = Distribution.ArgMax(logits);
            }
            else
            {
                Distribution.FromLogits(logits, sampling, probs);
                token = Distribution.Sample(probs, DeterministicRandom.Uniform(seed, session, 0, prompt.Length + i, RandomStream.Autoregressive));
            }

            output[i] = token;
            onToken?.Invoke(token);
            if (stopTokens.Contains(token))
            {
                return output[..(i + 1)];
            }

            if (i + 1 < maxTokens)
            {
                sequence.Feed([token], logits);
            }
        }

        return output;
    }
}

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
            var token = Choose(logits, sampling, seed, session, prompt.Length + i, probs);
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

    /// <summary>
    /// The token at <paramref name="position"/> of target-only decoding, from the model's <paramref name="logits"/>
    /// there: the argmax when greedy, else a sample with the uniform of (seed, session, position). Every decoder that
    /// must reproduce the reference chooses here: <see cref="Generate"/>, the baseline server and the verifier's
    /// streamed rung. <paramref name="probs"/> is scratch of the vocabulary's size (unused when greedy).
    /// </summary>
    public static int Choose(ReadOnlySpan<float> logits, SamplingParams sampling, ulong seed, ulong sessionKey, int position, Span<float> probs)
    {
        if (sampling.IsGreedy)
        {
            return Distribution.ArgMax(logits);
        }

        Distribution.FromLogits(logits, sampling, probs);
        return Distribution.Sample(probs, DeterministicRandom.Uniform(seed, sessionKey, 0, position, RandomStream.Autoregressive));
    }
}

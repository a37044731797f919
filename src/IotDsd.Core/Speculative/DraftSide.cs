using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>The device's half of verification: finishing a rejected position with its own Q_j.</summary>
public static class DraftSide
{
    /// <summary>Samples from norm(max(0, P − Q)). Falls back to P if the residual has no mass (P == Q up to rounding).</summary>
    public static int SampleResidual(ReadOnlySpan<float> p, ReadOnlySpan<float> q, double u)
    {
        Span<float> residual = p.Length <= 4096 ? stackalloc float[p.Length] : new float[p.Length];
        var mass = Distribution.Residual(p, q, residual);
        return mass > 0 ? Distribution.Sample(residual, u) : Distribution.Sample(p, u);
    }

    /// <summary>
    /// rsr: accepts the first proposal t with u ≤ 1 − Q(t)/P(t) — rejection sampling of the residual with proposal P.
    /// Returns −1 when every proposal is rejected (ask for more).
    /// </summary>
    public static int AcceptProposal(
        ReadOnlySpan<int> tokens, ReadOnlySpan<float> targetProbs, ReadOnlySpan<float> q, RoundRandom random, long position, int attempt) =>
        AcceptProposal(tokens, targetProbs, q, random, position, attempt, out _);

    /// <inheritdoc cref="AcceptProposal(ReadOnlySpan{int}, ReadOnlySpan{float}, ReadOnlySpan{float}, RoundRandom, long, int)"/>
    /// <param name="examined">How many proposals were looked at, the accepted one included.</param>
    public static int AcceptProposal(
        ReadOnlySpan<int> tokens, ReadOnlySpan<float> targetProbs, ReadOnlySpan<float> q, RoundRandom random, long position, int attempt, out int examined)
    {
        examined = tokens.Length;
        for (var k = 0; k < tokens.Length; k++)
        {
            var t = tokens[k];
            var p = targetProbs[k];
            if ((uint)t >= (uint)q.Length || !(p > 0f))
            {
                continue;
            }

            var acceptance = 1.0 - ((double)q[t] / p);
            if (random.Uniform(RandomStream.ProposalAccept, position, RoundRandom.ProposalIndex(attempt, k)) < acceptance)
            {
                examined = k + 1;
                return t;
            }
        }

        return -1;
    }
}

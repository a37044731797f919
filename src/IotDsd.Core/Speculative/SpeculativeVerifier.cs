using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>Acceptance probability of a draft token given target and draft probabilities.</summary>
public delegate double AcceptanceRule(float targetProb, float draftProb);

/// <summary>
/// The verifier's half of lossless speculative sampling (docs/protocol.md §2–3). Pure: rows and randomness in, outcome out.
/// </summary>
public static class SpeculativeVerifier
{
    /// <summary>min(1, P(d) / Q(d)): target over draft.</summary>
    public static readonly AcceptanceRule Standard = static (p, q) => q <= 0f ? 1.0 : Math.Min(1.0, (double)p / q);

    /// <summary>
    /// Verifies γ drafted tokens.
    /// </summary>
    /// <param name="mode">Wire mode of the session.</param>
    /// <param name="targetRows">P_1..P_{γ+1}: (γ+1)·V sampling probabilities.</param>
    /// <param name="vocab">V.</param>
    /// <param name="draft">d_1..d_γ.</param>
    /// <param name="draftProbs">dssd/rsr: Q_i(d_i). Ignored otherwise.</param>
    /// <param name="draftRows">dsd: Q_1..Q_γ, γ·V. Ignored otherwise.</param>
    /// <param name="random">The round's randomness.</param>
    /// <param name="firstPosition">Absolute position of d_1.</param>
    /// <param name="proposals">rsr: proposals to draw on a rejection.</param>
    /// <param name="rule">Acceptance rule; <see cref="Standard"/> unless a test swaps it.</param>
    public static RoundOutcome Verify(
        DecodingMode mode,
        ReadOnlySpan<float> targetRows,
        int vocab,
        ReadOnlySpan<int> draft,
        ReadOnlySpan<float> draftProbs,
        ReadOnlySpan<float> draftRows,
        RoundRandom random,
        long firstPosition,
        int proposals,
        AcceptanceRule? rule = null)
    {
        rule ??= Standard;
        var gamma = draft.Length;
        if (targetRows.Length != (gamma + 1) * vocab)
        {
            throw new ArgumentException($"expected {gamma + 1} target rows of {vocab}", nameof(targetRows));
        }

        for (var i = 0; i < gamma; i++)
        {
            var p = targetRows.Slice(i * vocab, vocab);
            var d = draft[i];
            var position = firstPosition + i;
            bool accepted;
            if (mode == DecodingMode.Greedy)
            {
                accepted = Distribution.ArgMax(p) == d;
            }
            else
            {
                var q = mode == DecodingMode.Dsd ? draftRows[(i * vocab) + d] : draftProbs[i];
                accepted = random.Uniform(RandomStream.Accept, position) < rule(p[d], q);
            }

            if (!accepted)
            {
                return Reject(mode, p, mode == DecodingMode.Dsd ? draftRows.Slice(i * vocab, vocab) : default, i, random, position, proposals);
            }
        }

        var bonusRow = targetRows.Slice(gamma * vocab, vocab);
        var bonusPosition = firstPosition + gamma;
        var bonus = mode == DecodingMode.Greedy
            ? Distribution.ArgMax(bonusRow)
            : Distribution.Sample(bonusRow, random.Uniform(RandomStream.Bonus, bonusPosition));
        return new RoundOutcome { Accepted = gamma, Kind = VerdictKind.Token, Token = bonus };
    }

    private static RoundOutcome Reject(
        DecodingMode mode, ReadOnlySpan<float> p, ReadOnlySpan<float> q, int accepted, RoundRandom random, long position, int proposals)
    {
        switch (mode)
        {
            case DecodingMode.Greedy:
                return new RoundOutcome { Accepted = accepted, Kind = VerdictKind.Token, Token = Distribution.ArgMax(p) };
            case DecodingMode.Dsd:
                return new RoundOutcome
                {
                    Accepted = accepted,
                    Kind = VerdictKind.Token,
                    Token = DraftSide.SampleResidual(p, q, random.Uniform(RandomStream.Residual, position)),
                };
            case DecodingMode.Dssd:
                return new RoundOutcome { Accepted = accepted, Kind = VerdictKind.TargetDistribution, TargetRow = p.ToArray() };
            case DecodingMode.Rsr:
                var row = p.ToArray();
                var (tokens, probs) = DrawProposals(row, random, position, attempt: 0, proposals);
                return new RoundOutcome
                {
                    Accepted = accepted,
                    Kind = VerdictKind.Proposals,
                    TargetRow = row,
                    ProposalTokens = tokens,
                    ProposalProbs = probs,
                };
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode");
        }
    }

    /// <summary>rsr: draws <paramref name="count"/> proposals i.i.d. from P_j for <paramref name="attempt"/>.</summary>
    public static (int[] Tokens, float[] Probs) DrawProposals(ReadOnlySpan<float> p, RoundRandom random, long position, int attempt, int count)
    {
        var tokens = new int[count];
        var probs = new float[count];
        for (var k = 0; k < count; k++)
        {
            var u = random.Uniform(RandomStream.Proposal, position, RoundRandom.ProposalIndex(attempt, k));
            tokens[k] = Distribution.Sample(p, u);
            probs[k] = p[tokens[k]];
        }

        return (tokens, probs);
    }
}

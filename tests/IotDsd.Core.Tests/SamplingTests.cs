using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

public sealed class DistributionTests
{
    private static float[] LogitsOf(params double[] weights) => weights.Select(w => (float)Math.Log(w)).ToArray();

    private static float[] Probs(float[] logits, SamplingParams sampling)
    {
        var probs = new float[logits.Length];
        Distribution.FromLogits(logits, sampling, probs);
        return probs;
    }

    private static void AssertRow(double[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], actual[i], 1e-6);
        }
    }

    [Fact]
    public void FromLogits_TemperatureOne_IsSoftmax()
    {
        AssertRow([1 / 7.0, 2 / 7.0, 4 / 7.0], Probs(LogitsOf(1, 2, 4), new(1f, 0, 1f)));
    }

    [Fact]
    public void FromLogits_Temperature_SharpensAndFlattens()
    {
        // T = 0.5 squares the weights, T = 2 takes their square roots.
        AssertRow([1 / 21.0, 4 / 21.0, 16 / 21.0], Probs(LogitsOf(1, 2, 4), new(0.5f, 0, 1f)));
        var s = 1 + Math.Sqrt(2) + 2;
        AssertRow([1 / s, Math.Sqrt(2) / s, 2 / s], Probs(LogitsOf(1, 2, 4), new(2f, 0, 1f)));
    }

    [Fact]
    public void FromLogits_ShiftedLogits_SameDistribution()
    {
        var a = Probs([1f, 2f, 3f], new(0.9f, 0, 1f));
        var b = Probs([1001f, 1002f, 1003f], new(0.9f, 0, 1f));
        AssertRow(a.Select(x => (double)x).ToArray(), b);
    }

    [Fact]
    public void FromLogits_TopK_KeepsKMostLikelyRenormalised()
    {
        AssertRow([0, 0, 1 / 3.0, 2 / 3.0], Probs(LogitsOf(1, 2, 4, 8), new(1f, 2, 1f)));
        AssertRow([0, 0, 0, 1], Probs(LogitsOf(1, 2, 4, 8), new(1f, 1, 1f)));
        AssertRow([1 / 15.0, 2 / 15.0, 4 / 15.0, 8 / 15.0], Probs(LogitsOf(1, 2, 4, 8), new(1f, 10, 1f)));
    }

    [Fact]
    public void FromLogits_TopKTies_BrokenByLowestId()
    {
        AssertRow([0, 0.5, 0.5, 0, 0], Probs([0f, 2f, 2f, 2f, 1f], new(1f, 2, 1f)));
        AssertRow([1, 0, 0], Probs([5f, 5f, 5f], new(1f, 1, 1f)));
    }

    [Fact]
    public void FromLogits_TopP_KeepsSmallestPrefixReachingP()
    {
        var logits = LogitsOf(0.1, 0.2, 0.3, 0.4);
        AssertRow([0, 0, 0, 1], Probs(logits, new(1f, 0, 0.35f)));          // 0.4 ≥ 0.35
        AssertRow([0, 0, 3 / 7.0, 4 / 7.0], Probs(logits, new(1f, 0, 0.65f))); // 0.4 < 0.65 ≤ 0.7
        AssertRow([0, 2 / 9.0, 3 / 9.0, 4 / 9.0], Probs(logits, new(1f, 0, 0.75f)));
        AssertRow([0.1, 0.2, 0.3, 0.4], Probs(logits, new(1f, 0, 0.95f)));
    }

    [Fact]
    public void FromLogits_TopKThenTopP_AppliesBoth()
    {
        var logits = LogitsOf(0.1, 0.2, 0.3, 0.4);
        AssertRow([0, 2 / 9.0, 3 / 9.0, 4 / 9.0], Probs(logits, new(1f, 3, 0.95f))); // top-k binds
        AssertRow([0, 0, 3 / 7.0, 4 / 7.0], Probs(logits, new(1f, 3, 0.65f)));       // top-p binds
    }

    [Fact]
    public void FromLogits_Greedy_OneHotAtLowestArgmax()
    {
        AssertRow([0, 1, 0, 0], Probs([0f, 3f, 3f, -1f], SamplingParams.Greedy));
        AssertRow([0, 0, 1], Probs([float.NaN, 1f, 2f], SamplingParams.Greedy));
    }

    [Fact]
    public void FromLogits_LengthMismatch_Throws()
    {
        Assert.Throws<ArgumentException>(() => Distribution.FromLogits([1f, 2f], new(1f, 0, 1f), new float[3]));
    }

    [Fact]
    public void FromLogits_NegativeInfinityLogit_GetsZeroProbability()
    {
        var probs = Probs([0f, float.NegativeInfinity, 0f], new(1f, 0, 1f));
        AssertRow([0.5, 0, 0.5], probs);
    }

    [Fact]
    public void ArgMax_TiesAndNaN_LowestIndexAndNaNNeverWins()
    {
        Assert.Equal(1, Distribution.ArgMax([0f, 2f, 2f]));
        Assert.Equal(2, Distribution.ArgMax([float.NaN, 1f, 2f, float.NaN]));
        Assert.Equal(0, Distribution.ArgMax([float.NegativeInfinity, float.NegativeInfinity]));
    }

    [Fact]
    public void Sample_InverseCdf_HandComputedBoundaries()
    {
        float[] probs = [0.25f, 0.5f, 0.25f];
        Assert.Equal(0, Distribution.Sample(probs, 0.0));
        Assert.Equal(0, Distribution.Sample(probs, 0.2499));
        Assert.Equal(1, Distribution.Sample(probs, 0.25));
        Assert.Equal(1, Distribution.Sample(probs, 0.7499));
        Assert.Equal(2, Distribution.Sample(probs, 0.75));
        Assert.Equal(2, Distribution.Sample(probs, Math.BitDecrement(1.0)));

        // Unnormalised rows are normalised: 2 / 8 is the boundary.
        Assert.Equal(1, Distribution.Sample([0f, 2f, 0f, 6f], 0.2));
        Assert.Equal(3, Distribution.Sample([0f, 2f, 0f, 6f], 0.3));
    }

    [Fact]
    public void Sample_AnyUniform_NeverReturnsZeroProbabilityToken()
    {
        float[] probs = [0f, 0.3f, 0f, 0.7f, 0f];
        float[] tiny = [0f, 1e-30f, 0f];
        for (var i = 0; i <= 10_000; i++)
        {
            var u = Math.Min(i / 10_000.0, Math.BitDecrement(1.0));
            Assert.Contains(Distribution.Sample(probs, u), new[] { 1, 3 });
            Assert.Equal(1, Distribution.Sample(tiny, u));
        }

        // Rounding can leave the cumulative sum just short of u·total; the last positive token answers, not a zero one.
        Assert.Equal(3, Distribution.Sample([0.1f, 0f, 0.2f, 0.7f, 0f, 0f], Math.BitDecrement(1.0)));
    }

    [Fact]
    public void Sample_NoPositiveMass_Throws()
    {
        Assert.Throws<ArgumentException>(() => Distribution.Sample([0f, 0f], 0.5));
        Assert.Throws<ArgumentException>(() => Distribution.Sample([0f, -1f, float.NaN], 0.5));
    }

    [Fact]
    public void Sample_ManyUniforms_FrequenciesMatchRow()
    {
        float[] probs = [0.05f, 0.1f, 0f, 0.35f, 0.5f];
        var counts = new long[probs.Length];
        for (var i = 0; i < 100_000; i++)
        {
            counts[Distribution.Sample(probs, DeterministicRandom.Uniform(3, 4, 5, i, RandomStream.Bonus))]++;
        }

        var result = ChiSquare.GoodnessOfFit(counts, probs.Select(p => (double)p).ToArray());
        Assert.Equal(0, result.Impossible);
        Assert.True(result.PValue > 1e-4, result.ToString());
    }

    [Fact]
    public void Residual_OnProbabilities_PositivePartAndMass()
    {
        var residual = new float[3];
        var mass = Distribution.Residual([0.5f, 0.3f, 0.2f], [0.2f, 0.5f, 0.3f], residual);
        Assert.Equal(0.3, mass, 1e-6);
        Assert.Equal(0.3f, residual[0], 1e-6f);
        Assert.Equal(0f, residual[1]);
        Assert.Equal(0f, residual[2]);

        // Same logits through different temperatures: the residual is taken on probabilities, not logits.
        var p = new float[2];
        var q = new float[2];
        Distribution.FromLogits([0f, 1f], new(1f, 0, 1f), p);
        Distribution.FromLogits([0f, 1f], new(0.5f, 0, 1f), q);
        Distribution.Residual(p, q, residual.AsSpan(0, 2));
        Assert.True(residual[0] > 0f && residual[1] == 0f);
    }

    [Fact]
    public void SampleResidual_ResidualSupport_OnlyWhereTargetExceedsDraft()
    {
        float[] p = [0.5f, 0.3f, 0.2f, 0f];
        float[] q = [0.2f, 0.5f, 0.1f, 0.2f];
        var counts = new long[4];
        for (var i = 0; i < 20_000; i++)
        {
            counts[DraftSide.SampleResidual(p, q, DeterministicRandom.Uniform(1, 2, 3, i, RandomStream.Residual))]++;
        }

        // norm(max(0, p − q)) = [0.3, 0, 0.1, 0] / 0.4
        var result = ChiSquare.GoodnessOfFit(counts, [0.75, 0, 0.25, 0]);
        Assert.Equal(0, result.Impossible);
        Assert.True(result.PValue > 1e-4, result.ToString());
    }

    [Fact]
    public void SampleResidual_EqualRows_FallsBackToTarget()
    {
        float[] p = [0.25f, 0.75f];
        Assert.Equal(0, DraftSide.SampleResidual(p, p, 0.1));
        Assert.Equal(1, DraftSide.SampleResidual(p, p, 0.5));
    }

    [Fact]
    public void SamplingParams_Validate_RejectsOutOfRangeAndRoundTripsWire()
    {
        Assert.Null(new SamplingParams(0.7f, 40, 0.9f).Validate());
        Assert.Null(SamplingParams.Greedy.Validate());
        Assert.NotNull(new SamplingParams(101f, 0, 1f).Validate());
        Assert.NotNull(new SamplingParams(float.PositiveInfinity, 0, 1f).Validate());
        Assert.NotNull(new SamplingParams(1f, 0, float.NaN).Validate());
        Assert.True(SamplingParams.Greedy.IsGreedy);
        Assert.False(new SamplingParams(0.01f, 0, 1f).IsGreedy);
        var s = new SamplingParams(0.7f, 40, 0.9f);
        Assert.Equal(s, SamplingParams.From(s.ToWire()));
    }
}

public sealed class SpeculativeVerifierTests
{
    private const int V = 4;

    private static float[] Rows(params float[][] rows) => rows.SelectMany(r => r).ToArray();

    private static readonly RoundRandom Random = new(11, 22, 1);

    [Fact]
    public void Standard_TargetOverDraft_ClampedToOne()
    {
        Assert.Equal(1.0, SpeculativeVerifier.Standard(0.6f, 0.3f));
        Assert.Equal(0.5, SpeculativeVerifier.Standard(0.3f, 0.6f), 1e-7);
        Assert.Equal(0.0, SpeculativeVerifier.Standard(0f, 0.6f));
        Assert.Equal(1.0, SpeculativeVerifier.Standard(0.5f, 0f));
    }

    [Fact]
    public void Verify_GreedyAllMatch_AcceptsAllAndBonusIsLastArgmax()
    {
        var rows = Rows([0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]);
        var outcome = SpeculativeVerifier.Verify(DecodingMode.Greedy, rows, V, [1, 2], default, default, Random, 5, 0);
        Assert.Equal(2, outcome.Accepted);
        Assert.Equal(VerdictKind.Token, outcome.Kind);
        Assert.Equal(0, outcome.Token);
    }

    [Fact]
    public void Verify_GreedyMismatch_StopsAtFirstAndCorrectsWithArgmax()
    {
        var rows = Rows([0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]);
        var outcome = SpeculativeVerifier.Verify(DecodingMode.Greedy, rows, V, [1, 2], default, default, Random, 5, 0);
        Assert.Equal(1, outcome.Accepted);
        Assert.Equal(3, outcome.Token);
    }

    [Fact]
    public void Verify_WrongRowCount_Throws()
    {
        Assert.Throws<ArgumentException>(() =>
            SpeculativeVerifier.Verify(DecodingMode.Greedy, new float[V * 2], V, [1, 2], default, default, Random, 5, 0));
    }

    [Fact]
    public void Verify_TargetGivesDraftZero_AlwaysRejects()
    {
        var p = Rows([0.5f, 0f, 0.5f, 0f], [0.25f, 0.25f, 0.25f, 0.25f]);
        for (var r = 1; r < 200; r++)
        {
            var random = new RoundRandom(1, 2, r);
            var dssd = SpeculativeVerifier.Verify(DecodingMode.Dssd, p, V, [1], [0.9f], default, random, 3, 0);
            Assert.Equal(0, dssd.Accepted);
            Assert.Equal(VerdictKind.TargetDistribution, dssd.Kind);
            Assert.Equal([0.5f, 0f, 0.5f, 0f], dssd.TargetRow!);

            var rsr = SpeculativeVerifier.Verify(DecodingMode.Rsr, p, V, [1], [0.9f], default, random, 3, 5);
            Assert.Equal(VerdictKind.Proposals, rsr.Kind);
            Assert.Equal(5, rsr.ProposalTokens!.Length);
            Assert.All(rsr.ProposalTokens, t => Assert.True(t is 0 or 2));
            Assert.All(rsr.ProposalProbs!, pr => Assert.Equal(0.5f, pr));

            var dsd = SpeculativeVerifier.Verify(DecodingMode.Dsd, p, V, [1], default, [0.05f, 0.9f, 0.05f, 0f], random, 3, 0);
            Assert.Equal(0, dsd.Accepted);
            Assert.True(dsd.Token is 0 or 2);
        }
    }

    [Fact]
    public void Verify_TargetDominatesDraft_AlwaysAccepts()
    {
        var p = Rows([0.1f, 0.8f, 0.1f, 0f], [0.25f, 0.25f, 0.25f, 0.25f]);
        for (var r = 1; r < 200; r++)
        {
            var outcome = SpeculativeVerifier.Verify(DecodingMode.Rsr, p, V, [1], [0.7f], default, new RoundRandom(5, 6, r), 3, 4);
            Assert.Equal(1, outcome.Accepted);
            Assert.Equal(VerdictKind.Token, outcome.Kind);
        }
    }

    [Fact]
    public void Verify_PartialRatio_AcceptanceFrequencyIsTargetOverDraft()
    {
        var p = Rows([0.5f, 0.2f, 0.3f, 0f], [0.25f, 0.25f, 0.25f, 0.25f]);
        var accepted = 0;
        const int n = 40_000;
        for (var r = 1; r <= n; r++)
        {
            accepted += SpeculativeVerifier.Verify(DecodingMode.Dssd, p, V, [1], [0.8f], default, new RoundRandom(7, 8, r), 3, 0).Accepted;
        }

        // P/Q = 0.25; binomial sd ≈ 0.0022.
        Assert.InRange(accepted / (double)n, 0.25 - 0.012, 0.25 + 0.012);
    }

    [Fact]
    public void DrawProposals_AttemptsAndIndices_Independent()
    {
        float[] p = [0.25f, 0.25f, 0.25f, 0.25f];
        var a = SpeculativeVerifier.DrawProposals(p, Random, 10, attempt: 0, count: 64);
        var b = SpeculativeVerifier.DrawProposals(p, Random, 10, attempt: 1, count: 64);
        var again = SpeculativeVerifier.DrawProposals(p, Random, 10, attempt: 0, count: 64);
        Assert.Equal(a.Tokens, again.Tokens);
        Assert.NotEqual(a.Tokens, b.Tokens);
        Assert.Equal(4, a.Tokens.Distinct().Count());
        Assert.NotEqual(RoundRandom.ProposalIndex(0, 1), RoundRandom.ProposalIndex(1, 0));
    }

    [Fact]
    public void AcceptProposal_RejectsWhereDraftCoversTargetAndSkipsJunk()
    {
        float[] q = [0.5f, 0f, 0.5f];
        var random = new RoundRandom(1, 1, 1);

        // Q(t) ≥ P(t): acceptance 1 − Q/P ≤ 0, never accepted.
        Assert.Equal(-1, DraftSide.AcceptProposal([0, 2, 0], [0.4f, 0.5f, 0.4f], q, random, 4, 0));

        // Q(t) = 0: always accepted.
        Assert.Equal(1, DraftSide.AcceptProposal([0, 1], [0.4f, 0.2f], q, random, 4, 0));

        // Out-of-vocabulary tokens and non-positive or NaN probabilities are skipped, not trusted.
        Assert.Equal(-1, DraftSide.AcceptProposal([-1, 3, 1, 1], [0.9f, 0.9f, 0f, float.NaN], q, random, 4, 0));
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Core.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Core.Tests;

/// <summary>Shared model pair and measurement for the distributional tests.</summary>
internal static class Lossless
{
    public const int Vocab = 6;
    public const int Length = 3;
    public const int Samples = 100_000;
    public const double Alpha = 1e-4;

    public static readonly int[] Prompt = [2, 4];
    public static readonly (TableModel Target, TableModel Draft) Models = TableModel.CreatePair(Vocab, seed: 46, targetScale: 1.5, draftNoise: 0.8);
    public static TableModel Target => Models.Target;
    public static TableModel Draft => Models.Draft;

    public static readonly SamplingParams Plain = new(1f, 0, 1f);
    public static readonly SamplingParams Shaped = new(0.7f, 4, 0.9f);

    public static (ChiSquareResult Result, DriveStats Stats) Speculative(
        DecodingMode mode,
        SamplingParams sampling,
        int gamma,
        int length = Length,
        int proposals = 4,
        AcceptanceRule? rule = null,
        SessionDriver.Tamper? tamper = null,
        int samples = Samples)
    {
        // Each configuration gets its own session ids and seeds, so no two tests share their random draws.
        var first = (int)mode * 10_000_000 + gamma * 1_000_000 + length * 100_000_000 + (int)(sampling.Temperature * 10) * 200_000_000 + proposals * 7;
        var counts = new long[(int)Math.Pow(Vocab, length)];
        var stats = new DriveStats();
        for (var i = 0; i < samples; i++)
        {
            var settings = SessionDriver.Settings(first + i, mode, sampling, length, gamma);
            var tokens = SessionDriver.Run(Draft, Target, settings, Prompt, proposals, rule, tamper, stats);
            Assert.Equal(length, tokens.Length);
            counts[Reference.Cell(tokens, Vocab)]++;
        }

        return (ChiSquare.GoodnessOfFit(counts, Reference.Joint(Target, Prompt, length, sampling)), stats);
    }

    public static ChiSquareResult Autoregressive(SamplingParams sampling, int samples = Samples)
    {
        var counts = new long[(int)Math.Pow(Vocab, Length)];
        for (var i = 0; i < samples; i++)
        {
            var tokens = IotDsd.Core.Speculative.Autoregressive.Generate(Target, Prompt, sampling, DeterministicRandom.SampleSeed(77, i), $"ar-{i}", Length);
            counts[Reference.Cell(tokens, Vocab)]++;
        }

        return ChiSquare.GoodnessOfFit(counts, Reference.Joint(Target, Prompt, Length, sampling));
    }
}

public sealed class LosslessnessTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(DecodingMode.Dsd, false, 2, 3)]
    [InlineData(DecodingMode.Dsd, true, 3, 4)]
    [InlineData(DecodingMode.Dssd, false, 3, 4)]
    [InlineData(DecodingMode.Dssd, true, 2, 3)]
    [InlineData(DecodingMode.Rsr, false, 2, 3)]
    [InlineData(DecodingMode.Rsr, true, 3, 4)]
    [InlineData(DecodingMode.Rsr, false, 3, 2)]
    public void Generate_ModeAndSampling_MatchesTargetAutoregressiveDistribution(DecodingMode mode, bool shaped, int gamma, int length)
    {
        var sampling = shaped ? Lossless.Shaped : Lossless.Plain;
        var (result, stats) = Lossless.Speculative(mode, sampling, gamma, length);
        output.WriteLine($"{mode.Name()} T={sampling.Temperature} k={sampling.TopK} p={sampling.TopP} gamma={gamma} tokens={length}: {result}; {stats}");
        Assert.Equal(0, result.Impossible);
        Assert.InRange(stats.AcceptanceRate, 0.3, 0.95);
        Assert.True(stats.Rounds > stats.Sessions, "every session should need more than one round");
        Assert.True(result.PValue >= Lossless.Alpha, $"chi-square rejects {mode.Name()}: {result}");
    }

    [Fact]
    public void Generate_RsrWithOneProposal_FollowUpsHappenAndDistributionMatches()
    {
        var (result, stats) = Lossless.Speculative(DecodingMode.Rsr, Lossless.Plain, gamma: 2, proposals: 1);
        output.WriteLine($"rsr m=1: {result}; {stats}");
        Assert.True(stats.FollowUps > 1000, $"expected many MoreProposals follow-ups, got {stats.FollowUps}");
        Assert.Equal(0, result.Impossible);
        Assert.True(result.PValue >= Lossless.Alpha, $"chi-square rejects rsr with follow-ups: {result}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AutoregressiveGenerate_Sampling_MatchesTargetDistribution(bool shaped)
    {
        var sampling = shaped ? Lossless.Shaped : Lossless.Plain;
        var result = Lossless.Autoregressive(sampling);
        output.WriteLine($"autoregressive T={sampling.Temperature} k={sampling.TopK} p={sampling.TopP}: {result}");
        Assert.Equal(0, result.Impossible);
        Assert.True(result.PValue >= Lossless.Alpha, $"chi-square rejects the reference sampler: {result}");
    }

    [Fact]
    public void Generate_Greedy_EqualsTargetArgmaxDecodingForEverySeed()
    {
        var mismatches = 0;
        var stats = new DriveStats();
        var prompts = new List<int[]>();
        for (var a = 0; a < Lossless.Vocab; a++)
        {
            for (var b = 0; b < Lossless.Vocab; b++)
            {
                prompts.Add([a, b]);
            }
        }

        var expected = prompts.Select(p => Reference.Greedy(Lossless.Target, p, 6)).ToArray();
        for (var i = 0; i < Lossless.Samples; i++)
        {
            var p = i % prompts.Count;
            var gamma = 1 + (i / prompts.Count % 4);
            var maxTokens = 1 + (i % 6);
            var settings = SessionDriver.Settings(i, DecodingMode.Greedy, SamplingParams.Greedy, maxTokens, gamma);
            var tokens = SessionDriver.Run(Lossless.Draft, Lossless.Target, settings, prompts[p], stats: stats);
            if (!tokens.AsSpan().SequenceEqual(expected[p].AsSpan(0, maxTokens)))
            {
                mismatches++;
            }
        }

        output.WriteLine($"greedy: {Lossless.Samples} sessions, {mismatches} mismatches (chi2 = 0 on a point mass); {stats}");
        Assert.Equal(0, mismatches);
        Assert.InRange(stats.AcceptanceRate, 0.2, 0.99);
    }

    [Fact]
    public void AutoregressiveGenerate_Greedy_EqualsTableArgmaxDecoding()
    {
        for (var a = 0; a < Lossless.Vocab; a++)
        {
            for (var b = 0; b < Lossless.Vocab; b++)
            {
                int[] prompt = [a, b];
                var expected = Reference.Greedy(Lossless.Target, prompt, 12);
                var actual = Autoregressive.Generate(Lossless.Target, prompt, SamplingParams.Greedy, seed: (ulong)(a + b), "g", 12);
                Assert.Equal(expected, actual);
                var speculative = SessionDriver.Run(Lossless.Draft, Lossless.Target, SessionDriver.Settings(a * 7 + b, DecodingMode.Greedy, SamplingParams.Greedy, 12, 4), prompt);
                Assert.Equal(actual, speculative);
            }
        }
    }

    [Fact]
    public void FromLogits_EveryTableRow_MatchesDoublePrecisionReference()
    {
        var probs = new float[Lossless.Vocab];
        foreach (var model in new[] { Lossless.Target, Lossless.Draft })
        {
            for (var prev2 = 0; prev2 <= Lossless.Vocab; prev2++)
            {
                for (var prev1 = 0; prev1 < Lossless.Vocab; prev1++)
                {
                    var row = model.Row(prev2, prev1);
                    foreach (var sampling in new[] { Lossless.Plain, Lossless.Shaped, SamplingParams.Greedy })
                    {
                        Assert.True(Reference.TopPMargin(row, sampling) > 1e-4 || sampling.TopP >= 1f, "top-p threshold too close to a partial sum");
                        Distribution.FromLogits(row, sampling, probs);
                        var expected = Reference.Probabilities(row, sampling);
                        for (var t = 0; t < probs.Length; t++)
                        {
                            Assert.Equal(expected[t], probs[t], 1e-5);
                        }
                    }
                }
            }
        }
    }
}

public sealed class BrokenVariantTests(ITestOutputHelper output)
{
    /// <summary>The acceptance rule printed upside down: draft over target.</summary>
    private static readonly AcceptanceRule Inverted = static (p, q) => p <= 0f ? 1.0 : Math.Min(1.0, (double)q / p);

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Rsr)]
    public void Generate_InvertedAcceptanceRule_ChiSquareRejects(DecodingMode mode)
    {
        var (result, stats) = Lossless.Speculative(mode, Lossless.Plain, gamma: 2, proposals: 5, rule: Inverted);
        output.WriteLine($"{mode.Name()} with min(1, q/p): {result}; {stats}");
        Assert.True(result.PValue < Lossless.Alpha, $"chi-square failed to reject the inverted rule: {result}");
    }

    [Fact]
    public void Generate_DsdCorrectionSampledFromTarget_ChiSquareRejects()
    {
        SessionDriver.Tamper fromTarget = static (verdict, round, logits, verifier) =>
        {
            var gamma = round.Draft.Length;
            var vocab = Lossless.Vocab;
            var rows = new float[(gamma + 1) * vocab];
            for (var i = 0; i <= gamma; i++)
            {
                Distribution.FromLogits(logits.Slice(i * vocab, vocab), verifier.Sampling, rows.AsSpan(i * vocab, vocab));
            }

            var random = new RoundRandom(verifier.Open.Seed, DeterministicRandom.SessionKey(verifier.Open.SessionId), round.Round);
            var draftRows = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(round.DraftDistributions);
            var outcome = SpeculativeVerifier.Verify(DecodingMode.Dsd, rows, vocab, round.Draft, default, draftRows, random, round.CommittedLength, 0);
            Assert.Equal(verdict.Accepted, outcome.Accepted);
            if (outcome.Accepted == gamma)
            {
                return verdict;
            }

            // The bug: the correction comes from P_j itself instead of norm(max(0, P_j − Q_j)).
            var p = rows.AsSpan(outcome.Accepted * vocab, vocab);
            var token = Distribution.Sample(p, random.Uniform(RandomStream.Residual, round.CommittedLength + outcome.Accepted));
            return verdict with { Token = token };
        };

        var (result, stats) = Lossless.Speculative(DecodingMode.Dsd, Lossless.Plain, gamma: 2, proposals: 6, tamper: fromTarget);
        output.WriteLine($"dsd with correction from P: {result}; {stats}");
        Assert.True(result.PValue < Lossless.Alpha, $"chi-square failed to reject correction-from-P: {result}");
    }
}

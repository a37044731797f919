using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

public sealed class DeterministicRandomTests
{
    [Fact]
    public void Uniform_SameArguments_SameValue()
    {
        for (var i = 0; i < 1000; i++)
        {
            var a = DeterministicRandom.Uniform(42, 7, i, i * 3, RandomStream.Accept, i % 5);
            var b = DeterministicRandom.Uniform(42, 7, i, i * 3, RandomStream.Accept, i % 5);
            Assert.Equal(a, b);
            Assert.InRange(a, 0.0, Math.BitDecrement(1.0));
        }
    }

    [Fact]
    public void Uniform_EachArgument_ChangesValue()
    {
        var baseline = DeterministicRandom.Uniform(1, 2, 3, 4, RandomStream.Draft, 5);
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(9, 2, 3, 4, RandomStream.Draft, 5));
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(1, 9, 3, 4, RandomStream.Draft, 5));
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(1, 2, 9, 4, RandomStream.Draft, 5));
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(1, 2, 3, 9, RandomStream.Draft, 5));
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(1, 2, 3, 4, RandomStream.Accept, 5));
        Assert.NotEqual(baseline, DeterministicRandom.Uniform(1, 2, 3, 4, RandomStream.Draft, 9));
    }

    [Fact]
    public void Uniform_AllStreamsAtOnePosition_Distinct()
    {
        var values = Enum.GetValues<RandomStream>().Select(s => DeterministicRandom.Uniform(3, 3, 3, 3, s)).ToArray();
        Assert.Equal(values.Length, values.Distinct().Count());
    }

    [Theory]
    [InlineData(RandomStream.Draft)]
    [InlineData(RandomStream.Accept)]
    [InlineData(RandomStream.Proposal)]
    public void Uniform_ManyPositions_BucketsRoughlyUniform(RandomStream stream)
    {
        const int buckets = 100;
        var counts = new long[buckets];
        for (var i = 0; i < 100_000; i++)
        {
            counts[(int)(DeterministicRandom.Uniform(2024, 17, i / 50, i % 50, stream) * buckets)]++;
        }

        var result = ChiSquare.GoodnessOfFit(counts, Enumerable.Repeat(1.0 / buckets, buckets).ToArray());
        Assert.True(result.PValue > 1e-4, result.ToString());
    }

    [Fact]
    public void Uniform_AdjacentStreams_Uncorrelated()
    {
        // Accept and Residual at the same position are both used on a rejection; they must not move together.
        const int n = 50_000;
        double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
        for (var i = 0; i < n; i++)
        {
            var x = DeterministicRandom.Uniform(5, 6, 7, i, RandomStream.Accept);
            var y = DeterministicRandom.Uniform(5, 6, 7, i, RandomStream.Residual);
            sx += x;
            sy += y;
            sxy += x * y;
            sxx += x * x;
            syy += y * y;
        }

        var r = ((n * sxy) - (sx * sy)) / Math.Sqrt(((n * sxx) - (sx * sx)) * ((n * syy) - (sy * sy)));
        Assert.InRange(r, -0.02, 0.02);
    }

    [Fact]
    public void SessionKey_StableAndDistinct()
    {
        Assert.Equal(DeterministicRandom.SessionKey("abc"), DeterministicRandom.SessionKey("abc"));
        Assert.NotEqual(DeterministicRandom.SessionKey("abc"), DeterministicRandom.SessionKey("abd"));
        Assert.NotEqual(DeterministicRandom.SessionKey(""), DeterministicRandom.SessionKey("a"));
        var keys = Enumerable.Range(0, 10_000).Select(i => DeterministicRandom.SessionKey($"sess-{i}")).ToHashSet();
        Assert.Equal(10_000, keys.Count);
    }

    [Fact]
    public void SampleSeed_IndexZeroIsSeedOthersDistinct()
    {
        Assert.Equal(77UL, DeterministicRandom.SampleSeed(77, 0));
        var seeds = Enumerable.Range(0, 1000).Select(i => DeterministicRandom.SampleSeed(77, i)).ToHashSet();
        Assert.Equal(1000, seeds.Count);
    }
}

public sealed class DeterminismTests
{
    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void Complete_SameRoundOnTwoVerifiers_IdenticalVerdict(DecodingMode mode)
    {
        using var pair = new SessionPair(mode, maxTokens: 30, seed: 5);
        while (!pair.Device.IsComplete)
        {
            var round = pair.Device.PrepareRound(3, 4);

            // A second verifier (a failover replica) rebuilt to the same state verifies the same round.
            using var replica = new VerifierSession(Lossless.Target, pair.Verifier.Open, SessionDriver.DeviceId);
            var history = pair.Device.Committed.Take(round.CommittedLength - round.Pending.Length).ToArray();
            var first = pair.Verify(round);
            var second = VerifyFresh(replica, round, history);
            Assert.Equal(WireCodec.Encode(first), WireCodec.Encode(second));
            Assert.Equal(RoundStepKind.Committed, Finish(pair, first).Kind);
        }
    }

    private static Verdict VerifyFresh(VerifierSession replica, DraftRound round, int[] history)
    {
        // The replica has no cache: it gets the whole prefix, as after a failover.
        var full = round with { Pending = [.. history, .. round.Pending] };
        Assert.Equal(RoundCheckKind.Ok, replica.Check(full).Kind);
        var feed = replica.BeginFeed(full);
        Lossless.Target.FeedBatch([feed]);
        return replica.Complete(full, feed.Logits.Span, 1, 0, 0);
    }

    private static RoundStep Finish(SessionPair pair, Verdict verdict)
    {
        var step = pair.Device.Apply(verdict, 4);
        while (step.Kind == RoundStepKind.NeedMoreProposals)
        {
            step = pair.Device.Apply(pair.Verifier.MoreProposals(step.FollowUp!).Verdict!, 4);
        }

        return step;
    }

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void Run_SameSeedTwice_IdenticalTextAndDifferentSeedDiffers(DecodingMode mode)
    {
        using var a = new SessionPair(mode, maxTokens: 40, seed: 11, sessionId: "same");
        using var b = new SessionPair(mode, maxTokens: 40, seed: 11, sessionId: "same");
        using var c = new SessionPair(mode, maxTokens: 40, seed: 12, sessionId: "same");
        using var d = new SessionPair(mode, maxTokens: 40, seed: 11, sessionId: "other");
        var text = a.RunToEnd();
        Assert.Equal(text, b.RunToEnd());
        Assert.NotEqual(text, c.RunToEnd());
        Assert.NotEqual(text, d.RunToEnd());
    }

    [Fact]
    public void Run_DuplicatedAndRetriedMessages_SameTextAsCleanRun()
    {
        using var clean = new SessionPair(DecodingMode.Rsr, maxTokens: 30, seed: 8, sessionId: "dup");
        var expected = clean.RunToEnd(proposals: 1);

        using var pair = new SessionPair(DecodingMode.Rsr, maxTokens: 30, seed: 8, sessionId: "dup");
        Verdict? previous = null;
        while (!pair.Device.IsComplete)
        {
            var round = pair.Device.PrepareRound(3, 1);

            // QoS 1: the round arrives twice; the second gets the verdict already sent.
            var verdict = pair.Verify(round);
            var duplicate = pair.Verifier.Check(round);
            Assert.Same(verdict, duplicate.Verdict);

            // A late copy of the previous verdict reaches the device first and is ignored.
            if (previous is not null)
            {
                Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(previous, 1).Kind);
            }

            var step = pair.Device.Apply(duplicate.Verdict!, 1);
            while (step.Kind == RoundStepKind.NeedMoreProposals)
            {
                // The follow-up is retried: same attempt, same answer; the stale attempt-0 verdict is ignored.
                var more = pair.Verifier.MoreProposals(step.FollowUp!);
                Assert.Same(more.Verdict, pair.Verifier.MoreProposals(step.FollowUp!).Verdict);
                Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict, 1).Kind);
                step = pair.Device.Apply(more.Verdict!, 1);
            }

            Assert.Equal(RoundStepKind.Committed, step.Kind);
            previous = verdict;
        }

        Assert.True(pair.Device.FollowUps > 0);
        Assert.Equal(expected, pair.Device.Committed.Skip(pair.Device.PromptLength).ToArray());
    }
}

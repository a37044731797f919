using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

/// <summary>A device and a verifier session wired to the shared table models.</summary>
internal sealed class SessionPair : IDisposable
{
    public SessionPair(DecodingMode mode, int gamma = 3, int maxTokens = 12, SamplingParams? sampling = null, string sessionId = "pair", ulong seed = 99, int[]? prompt = null)
    {
        Settings = new SessionSettings
        {
            SessionId = sessionId,
            Mode = mode,
            Sampling = sampling ?? (mode == DecodingMode.Greedy ? SamplingParams.Greedy : Lossless.Plain),
            Seed = seed,
            MaxTokens = maxTokens,
            Gamma = gamma,
        };
        Device = new DraftSession(Lossless.Draft, Settings, prompt ?? Lossless.Prompt);
        Verifier = new VerifierSession(Lossless.Target, Device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
    }

    public SessionSettings Settings { get; }

    public DraftSession Device { get; }

    public VerifierSession Verifier { get; private set; }

    public int Gamma => Settings.Gamma;

    /// <summary>Checks, feeds and completes a round on the verifier; returns the verdict.</summary>
    public Verdict Verify(DraftRound round, IotDsd.Core.Speculative.AcceptanceRule? rule = null)
    {
        var check = Verifier.Check(round);
        Assert.Equal(RoundCheckKind.Ok, check.Kind);
        var feed = Verifier.BeginFeed(round);
        Lossless.Target.FeedBatch([feed]);
        return Verifier.Complete(round, feed.Logits.Span, 1, 0, 0, rule);
    }

    /// <summary>One full round, follow-ups included.</summary>
    public RoundStep Step(int proposals = 4) =>
        SessionDriver.VerifyAndApply(Device, Verifier, Lossless.Target, Device.PrepareRound(Gamma, proposals), proposals);

    public int[] RunToEnd(int proposals = 4)
    {
        while (!Device.IsComplete)
        {
            Assert.Equal(RoundStepKind.Committed, Step(proposals).Kind);
        }

        return Device.Committed.Skip(Device.PromptLength).ToArray();
    }

    /// <summary>Simulates a verifier that lost the session: the device resets, a fresh verifier session opens.</summary>
    public void Failover()
    {
        Device.ResetVerifier();
        Verifier.Dispose();
        Verifier = new VerifierSession(Lossless.Target, Device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
    }

    public void Dispose()
    {
        Device.Dispose();
        Verifier.Dispose();
    }
}

public sealed class VerifierSessionTests
{
    [Fact]
    public void Check_DuplicateRound_RepliesWithVerdictAlreadySent()
    {
        using var pair = new SessionPair(DecodingMode.Rsr);
        var round = pair.Device.PrepareRound(3, 4);
        var verdict = pair.Verify(round);
        var again = pair.Verifier.Check(round);
        Assert.Equal(RoundCheckKind.Reply, again.Kind);
        Assert.Same(verdict, again.Verdict);
    }

    [Fact]
    public void Check_StaleRound_ReturnsStale()
    {
        using var pair = new SessionPair(DecodingMode.Dssd);
        var first = pair.Device.PrepareRound(3, 0);
        pair.Device.Apply(pair.Verify(first));
        pair.Step();
        var check = pair.Verifier.Check(first);
        Assert.Equal(RoundCheckKind.Stale, check.Kind);
        Assert.Null(check.Verdict);
    }

    [Fact]
    public void Check_EpochMismatch_FailsWithUnknownSession()
    {
        using var pair = new SessionPair(DecodingMode.Dsd);
        var round = pair.Device.PrepareRound(3, 0) with { Epoch = pair.Verifier.Epoch + 1 };
        var check = pair.Verifier.Check(round);
        Assert.Equal(RoundCheckKind.Error, check.Kind);
        Assert.Equal(ErrorCode.UnknownSession, check.Code);
        Assert.False(string.IsNullOrWhiteSpace(check.Reason));
    }

    [Fact]
    public void Check_PrefixLengthMismatch_FailsWithPrefixMismatch()
    {
        using var pair = new SessionPair(DecodingMode.Rsr);
        pair.Step();
        var round = pair.Device.PrepareRound(3, 4);
        Assert.Equal(ErrorCode.PrefixMismatch, pair.Verifier.Check(round with { CommittedLength = round.CommittedLength + 1 }).Code);
        Assert.Equal(ErrorCode.PrefixMismatch, pair.Verifier.Check(round with { Pending = [.. round.Pending, 0] }).Code);
        Assert.Equal(RoundCheckKind.Ok, pair.Verifier.Check(round).Kind);
    }

    [Fact]
    public void Check_PrefixDigestMismatch_FailsWithPrefixMismatch()
    {
        using var pair = new SessionPair(DecodingMode.Rsr);
        var round = pair.Device.PrepareRound(3, 4);
        var check = pair.Verifier.Check(round with { PrefixDigest = round.PrefixDigest ^ 1 });
        Assert.Equal(RoundCheckKind.Error, check.Kind);
        Assert.Equal(ErrorCode.PrefixMismatch, check.Code);

        // Same length, different tokens: only the digest can tell.
        var swapped = round with { Pending = [round.Pending[1], round.Pending[0]] };
        Assert.Equal(ErrorCode.PrefixMismatch, pair.Verifier.Check(swapped).Code);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1.5f)]
    [InlineData(-0.25f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Check_InvalidDraftProbability_FailsWithInvalidRequest(float bad)
    {
        foreach (var mode in new[] { DecodingMode.Dssd, DecodingMode.Rsr })
        {
            using var pair = new SessionPair(mode);
            var round = pair.Device.PrepareRound(3, 4);
            var probs = round.DraftProbs!.ToArray();
            probs[1] = bad;
            var check = pair.Verifier.Check(round with { DraftProbs = probs });
            Assert.Equal(RoundCheckKind.Error, check.Kind);
            Assert.Equal(ErrorCode.InvalidRequest, check.Code);
        }
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    [InlineData(-1f)]
    public void Check_InvalidDsdRow_FailsWithInvalidRequest(float bad)
    {
        using var pair = new SessionPair(DecodingMode.Dsd);
        var round = pair.Device.PrepareRound(3, 0);
        var rows = MemoryMarshal.Cast<byte, float>(round.DraftDistributions.AsSpan()).ToArray();

        // The drafted token's own probability: 0 is as invalid as NaN (the draft could never have sampled it).
        rows[(1 * Lossless.Vocab) + round.Draft[1]] = bad;
        var check = pair.Verifier.Check(round with { DraftDistributions = MemoryMarshal.AsBytes(rows.AsSpan()).ToArray() });
        Assert.Equal(RoundCheckKind.Error, check.Kind);
        Assert.Equal(ErrorCode.InvalidRequest, check.Code);
    }

    public static TheoryData<string> MalformedRounds() =>
    [
        "probs-short", "probs-long", "probs-null", "rows-short", "rows-null", "draft-oov", "draft-negative", "pending-oov",
        "pending-empty", "gamma-too-large", "proposals-zero", "proposals-too-many",
    ];

    [Theory]
    [MemberData(nameof(MalformedRounds))]
    public void Check_MalformedRound_FailsWithInvalidRequest(string what)
    {
        var mode = what.StartsWith("rows", StringComparison.Ordinal) ? DecodingMode.Dsd : DecodingMode.Rsr;
        using var pair = new SessionPair(mode);
        var round = pair.Device.PrepareRound(3, 4);
        var v = Lossless.Vocab;
        round = what switch
        {
            "probs-short" => round with { DraftProbs = round.DraftProbs![..^1] },
            "probs-long" => round with { DraftProbs = [.. round.DraftProbs!, 0.5f] },
            "probs-null" => round with { DraftProbs = null },
            "rows-short" => round with { DraftDistributions = round.DraftDistributions![..^4] },
            "rows-null" => round with { DraftDistributions = null },
            "draft-oov" => round with { Draft = [round.Draft[0], v, round.Draft[2]] },
            "draft-negative" => round with { Draft = [round.Draft[0], -1, round.Draft[2]] },
            "pending-oov" => round with { Pending = [round.Pending[0], v + 3], PrefixDigest = PrefixDigest.Of([round.Pending[0], v + 3]) },
            "pending-empty" => round with { Pending = [], CommittedLength = 0, PrefixDigest = PrefixDigest.Of([]) },
            "gamma-too-large" => round with { Draft = [.. round.Draft, 0], DraftProbs = [.. round.DraftProbs!, 0.5f] },
            "proposals-zero" => round with { Proposals = 0 },
            "proposals-too-many" => round with { Proposals = VerifierSession.MaxProposals + 1 },
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };
        var check = pair.Verifier.Check(round);
        Assert.Equal(RoundCheckKind.Error, check.Kind);
        Assert.Equal(ErrorCode.InvalidRequest, check.Code);
    }

    [Fact]
    public void Complete_RoundVerified_CacheRolledBackToAcceptedLength()
    {
        using var pair = new SessionPair(DecodingMode.Dsd, gamma: 3);
        for (var r = 0; r < 4; r++)
        {
            var round = pair.Device.PrepareRound(3, 0);
            var verdict = pair.Verify(round);
            Assert.Equal(round.CommittedLength + verdict.Accepted, pair.Verifier.Known);
            Assert.Equal(RoundStepKind.Committed, pair.Device.Apply(verdict).Kind);
            Assert.Equal(pair.Verifier.Known, pair.Device.VerifierKnown);
            Assert.Equal(pair.Device.Committed.Count - 1, pair.Verifier.Known);
        }
    }

    [Fact]
    public void MoreProposals_SameAttemptTwice_ReturnsIdenticalProposals()
    {
        using var pair = new SessionPair(DecodingMode.Rsr, gamma: 3, maxTokens: 40);
        for (var r = 0; r < 40 && !pair.Device.IsComplete; r++)
        {
            var round = pair.Device.PrepareRound(3, 1);
            var verdict = pair.Verify(round);
            if (verdict.Kind != VerdictKind.Proposals)
            {
                pair.Device.Apply(verdict, 1);
                continue;
            }

            var request = new MoreProposals { SessionId = round.SessionId, Epoch = round.Epoch, Round = round.Round, Attempt = 1, Proposals = 16 };
            var a = pair.Verifier.MoreProposals(request);
            var b = pair.Verifier.MoreProposals(request);
            Assert.Equal(RoundCheckKind.Reply, a.Kind);
            Assert.Same(a.Verdict, b.Verdict);
            Assert.Equal(16, a.Verdict!.ProposalTokens!.Length);
            Assert.Equal(1, a.Verdict.Attempt);
            Assert.Equal(verdict.Accepted, a.Verdict.Accepted);
            var other = pair.Verifier.MoreProposals(request with { Attempt = 2 });
            Assert.NotEqual(a.Verdict.ProposalTokens, other.Verdict!.ProposalTokens);
            return;
        }

        Assert.Fail("no rsr rejection in 40 rounds");
    }

    [Fact]
    public void MoreProposals_NoRejectionOutstandingOrOutOfRange_FailsWithInvalidRequest()
    {
        using var pair = new SessionPair(DecodingMode.Rsr);
        var request = new MoreProposals { SessionId = "pair", Epoch = 1, Round = 1, Attempt = 1, Proposals = 4 };
        Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.MoreProposals(request).Code);

        // Find a rejected round, then ask with bad numbers.
        for (var r = 0; r < 40; r++)
        {
            var round = pair.Device.PrepareRound(3, 4);
            var verdict = pair.Verify(round);
            if (verdict.Kind == VerdictKind.Proposals)
            {
                var good = request with { Round = round.Round };
                Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.MoreProposals(good with { Attempt = 0 }).Code);
                Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.MoreProposals(good with { Proposals = 0 }).Code);
                Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.MoreProposals(good with { Proposals = VerifierSession.MaxProposals + 1 }).Code);
                // A follow-up for an older round is a late duplicate: dropped without a reply.
                Assert.Equal(RoundCheckKind.Stale, pair.Verifier.MoreProposals(good with { Round = round.Round - 1 }).Kind);
                Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.MoreProposals(good with { Epoch = 2 }).Code);
                Assert.Equal(RoundCheckKind.Reply, pair.Verifier.MoreProposals(good).Kind);
                return;
            }

            pair.Device.Apply(verdict);
            if (pair.Device.IsComplete)
            {
                break;
            }
        }

        Assert.Fail("no rsr rejection found");
    }
}

public sealed class DraftSessionTests
{
    [Fact]
    public void Apply_VerdictForAnotherRoundEpochSessionOrAttempt_IsIgnored()
    {
        using var pair = new SessionPair(DecodingMode.Rsr);
        var round = pair.Device.PrepareRound(3, 4);
        var verdict = pair.Verify(round);
        var before = pair.Device.Committed.ToArray();
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict with { Round = round.Round + 1 }).Kind);
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict with { Round = round.Round - 1 }).Kind);
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict with { Epoch = 7 }).Kind);
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict with { SessionId = "other" }).Kind);
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict with { Attempt = 3 }).Kind);
        Assert.Equal(before, pair.Device.Committed);
        Assert.NotEqual(RoundStepKind.Ignored, pair.Device.Apply(verdict).Kind);
    }

    [Fact]
    public void Apply_DuplicateVerdictAfterCommit_IsIgnored()
    {
        using var pair = new SessionPair(DecodingMode.Dsd);
        var round = pair.Device.PrepareRound(3, 0);
        var verdict = pair.Verify(round);
        Assert.Equal(RoundStepKind.Committed, pair.Device.Apply(verdict).Kind);
        var after = pair.Device.Committed.ToArray();
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict).Kind);
        Assert.Equal(after, pair.Device.Committed);
    }

    [Fact]
    public void Apply_NoRoundOutstanding_IsIgnored()
    {
        using var pair = new SessionPair(DecodingMode.Greedy);
        var verdict = new Verdict { SessionId = "pair", Epoch = 1, Round = 1, Accepted = 0, Kind = VerdictKind.Token, Token = 1 };
        Assert.Equal(RoundStepKind.Ignored, pair.Device.Apply(verdict).Kind);
        Assert.Equal(Lossless.Prompt, pair.Device.Committed);
    }

    public static TheoryData<DecodingMode, string> MalformedVerdicts() => new()
    {
        { DecodingMode.Greedy, "accepted-negative" },
        { DecodingMode.Greedy, "accepted-too-many" },
        { DecodingMode.Greedy, "token-oov" },
        { DecodingMode.Greedy, "token-negative" },
        { DecodingMode.Dsd, "token-oov" },
        { DecodingMode.Greedy, "kind-unknown" },
        { DecodingMode.Dsd, "kind-distribution" },
        { DecodingMode.Dssd, "row-short" },
        { DecodingMode.Dssd, "row-null" },
        { DecodingMode.Dssd, "kind-proposals" },
        { DecodingMode.Dssd, "distribution-all-accepted" },
        { DecodingMode.Rsr, "proposals-empty" },
        { DecodingMode.Rsr, "proposals-unpaired" },
        { DecodingMode.Rsr, "kind-distribution" },
        { DecodingMode.Rsr, "proposals-all-accepted" },
        { DecodingMode.Dssd, "row-nan" },
        { DecodingMode.Dssd, "row-negative" },
        { DecodingMode.Dssd, "row-zero" },
        { DecodingMode.Rsr, "proposal-oov" },
        { DecodingMode.Rsr, "proposal-prob-nan" },
        { DecodingMode.Rsr, "proposal-prob-zero" },
    };

    /// <summary>A uniform fp32 row with one entry overwritten.</summary>
    private static byte[] Row(int vocab, int index, float value)
    {
        var row = Enumerable.Repeat(1f / vocab, vocab).ToArray();
        row[index] = value;
        return MemoryMarshal.AsBytes(row.AsSpan()).ToArray();
    }

    [Theory]
    [MemberData(nameof(MalformedVerdicts))]
    public void Apply_MalformedVerdict_ThrowsAndLeavesCommittedTextUnchanged(DecodingMode mode, string what)
    {
        using var pair = new SessionPair(mode, gamma: 3);
        var round = pair.Device.PrepareRound(3, 4);
        var gamma = round.Draft.Length;
        var good = new Verdict { SessionId = round.SessionId, Epoch = round.Epoch, Round = round.Round, Accepted = 1, Kind = VerdictKind.Token, Token = 0 };
        var v = Lossless.Vocab;
        var bad = what switch
        {
            "accepted-negative" => good with { Accepted = -1 },
            "accepted-too-many" => good with { Accepted = gamma + 1 },
            "token-oov" => good with { Token = v },
            "token-negative" => good with { Token = -1 },
            "kind-unknown" => good with { Kind = (VerdictKind)9 },
            "kind-distribution" => good with { Kind = VerdictKind.TargetDistribution, TargetDistribution = Row(v, 0, 1f) },
            "kind-proposals" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [1], ProposalProbs = [0.5f] },
            "row-short" => good with { Kind = VerdictKind.TargetDistribution, TargetDistribution = new byte[(v * 4) - 4] },
            "row-null" => good with { Kind = VerdictKind.TargetDistribution },
            "distribution-all-accepted" => good with { Accepted = gamma, Kind = VerdictKind.TargetDistribution, TargetDistribution = Row(v, 0, 1f) },
            "proposals-empty" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [], ProposalProbs = [] },
            "proposals-unpaired" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [1, 2], ProposalProbs = [0.5f] },
            "proposals-all-accepted" => good with { Accepted = gamma, Kind = VerdictKind.Proposals, ProposalTokens = [1], ProposalProbs = [0.5f] },
            "row-nan" => good with { Kind = VerdictKind.TargetDistribution, TargetDistribution = Row(v, 0, float.NaN) },
            "row-negative" => good with { Kind = VerdictKind.TargetDistribution, TargetDistribution = Row(v, 2, -0.5f) },
            "row-zero" => good with { Kind = VerdictKind.TargetDistribution, TargetDistribution = new byte[v * 4] },
            "proposal-oov" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [v], ProposalProbs = [0.5f] },
            "proposal-prob-nan" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [1], ProposalProbs = [float.NaN] },
            "proposal-prob-zero" => good with { Kind = VerdictKind.Proposals, ProposalTokens = [1], ProposalProbs = [0f] },
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };
        var before = pair.Device.Committed.ToArray();
        var generated = pair.Device.Generated;
        Assert.Throws<ProtocolViolationException>(() => pair.Device.Apply(bad));
        Assert.Equal(before, pair.Device.Committed);
        Assert.Equal(generated, pair.Device.Generated);
        Assert.Equal(1, pair.Device.Round);

        // The round is still outstanding: the real verdict applies.
        Assert.Same(round, pair.Device.OutstandingRequest);
        Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(pair.Device, pair.Verifier, Lossless.Target, round, 4).Kind);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void ResetVerifier_BetweenRounds_NextRoundCarriesWholePrefixAndTextMatchesUninterruptedRun(DecodingMode mode)
    {
        using var reference = new SessionPair(mode, gamma: 3, maxTokens: 20, seed: 1234, sessionId: "reset");
        var expected = reference.RunToEnd();

        using var pair = new SessionPair(mode, gamma: 3, maxTokens: 20, seed: 1234, sessionId: "reset");
        pair.Step();
        pair.Step();
        pair.Failover();
        Assert.Equal(2, pair.Device.Epoch);
        Assert.Equal(0, pair.Device.VerifierKnown);
        var round = pair.Device.PrepareRound(3, 4);
        Assert.Equal(2, round.Epoch);
        Assert.Equal(pair.Device.Committed, round.Pending);
        Assert.Equal(round.CommittedLength, round.Pending.Length);
        Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(pair.Device, pair.Verifier, Lossless.Target, round, 4).Kind);
        Assert.Equal(expected, pair.RunToEnd());
    }

    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void ResetVerifier_WithRoundOutstanding_RedraftsSameRoundAndTextMatchesUninterruptedRun(DecodingMode mode)
    {
        using var reference = new SessionPair(mode, gamma: 3, maxTokens: 20, seed: 4321, sessionId: "reset-mid");
        var expected = reference.RunToEnd();

        using var pair = new SessionPair(mode, gamma: 3, maxTokens: 20, seed: 4321, sessionId: "reset-mid");
        pair.Step();
        var lost = pair.Device.PrepareRound(3, 4);

        // The verifier lost the session while the round was in flight (it answers PrefixMismatch / UnknownSession).
        pair.Failover();
        Assert.Null(pair.Device.OutstandingRequest);
        var round = pair.Device.PrepareRound(3, 4);
        Assert.Equal(lost.Round, round.Round);
        Assert.Equal(lost.Draft, round.Draft);
        Assert.Equal(pair.Device.Committed, round.Pending);
        Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(pair.Device, pair.Verifier, Lossless.Target, round, 4).Kind);
        Assert.Equal(expected, pair.RunToEnd());
    }

    [Fact]
    public void Run_SmallerGammaAfterOutstandingRound_RedraftsConsistently()
    {
        // Degradation ladder: a round times out and is re-drafted with a smaller γ before any verdict arrives.
        using var pair = new SessionPair(DecodingMode.Greedy, gamma: 4, maxTokens: 10);
        pair.Device.PrepareRound(4, 0);
        var smaller = pair.Device.PrepareRound(1, 0);
        Assert.Single(smaller.Draft);
        Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(pair.Device, pair.Verifier, Lossless.Target, smaller, 0).Kind);
        Assert.Equal(Reference.Greedy(Lossless.Target, Lossless.Prompt, 10), pair.RunToEnd());
    }

    [Fact]
    public void PrepareRound_NearMaxTokens_ClampsGammaAndCommitsExactlyMaxTokens()
    {
        for (var max = 1; max <= 6; max++)
        {
            using var pair = new SessionPair(DecodingMode.Rsr, gamma: 4, maxTokens: max);
            while (!pair.Device.IsComplete)
            {
                var round = pair.Device.PrepareRound(4, 4);
                Assert.InRange(round.Draft.Length, 0, max - pair.Device.Generated - 1);
                Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(pair.Device, pair.Verifier, Lossless.Target, round, 4).Kind);
            }

            Assert.Equal(max, pair.Device.Generated);
            Assert.Throws<InvalidOperationException>(() => pair.Device.PrepareRound(4, 4));
        }
    }

    [Fact]
    public void PrepareRound_ModeSpecificPayload_CarriesOnlyWhatTheModeNeeds()
    {
        using (var greedy = new SessionPair(DecodingMode.Greedy))
        {
            var r = greedy.Device.PrepareRound(3, 9);
            Assert.Null(r.DraftProbs);
            Assert.Null(r.DraftDistributions);
            Assert.Equal(0, r.Proposals);
        }

        using (var dsd = new SessionPair(DecodingMode.Dsd))
        {
            var r = dsd.Device.PrepareRound(3, 9);
            Assert.Null(r.DraftProbs);
            Assert.Equal(3 * Lossless.Vocab * sizeof(float), r.DraftDistributions!.Length);
            var rows = MemoryMarshal.Cast<byte, float>(r.DraftDistributions.AsSpan());
            for (var i = 0; i < 3; i++)
            {
                double sum = 0;
                foreach (var p in rows.Slice(i * Lossless.Vocab, Lossless.Vocab))
                {
                    sum += p;
                }

                Assert.Equal(1.0, sum, 1e-5);
                Assert.True(rows[(i * Lossless.Vocab) + r.Draft[i]] > 0f);
            }
        }

        using (var rsr = new SessionPair(DecodingMode.Rsr))
        {
            var r = rsr.Device.PrepareRound(3, 9);
            Assert.Equal(3, r.DraftProbs!.Length);
            Assert.Null(r.DraftDistributions);
            Assert.Equal(9, r.Proposals);
            Assert.Equal(PrefixDigest.Of(Lossless.Prompt), r.PrefixDigest);
            Assert.Equal(Lossless.Prompt.Length, r.CommittedLength);
        }
    }

    [Fact]
    public void Constructor_EmptyPromptOrInvalidSettings_Throws()
    {
        var settings = new SessionSettings { SessionId = "x", Mode = DecodingMode.Rsr };
        Assert.Throws<ArgumentException>(() => new DraftSession(Lossless.Draft, settings, []));
        Assert.Throws<ArgumentException>(() => new DraftSession(Lossless.Draft, settings with { Gamma = 0 }, [1]));
        Assert.Throws<ArgumentException>(() => new DraftSession(Lossless.Draft, settings with { Mode = DecodingMode.Greedy }, [1]));
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 1f, 0, 1f, 10, 4, "temperature 0")]
    [InlineData(DecodingMode.Rsr, -1f, 0, 1f, 10, 4, "temperature")]
    [InlineData(DecodingMode.Rsr, float.NaN, 0, 1f, 10, 4, "temperature")]
    [InlineData(DecodingMode.Rsr, 1f, -1, 1f, 10, 4, "top-k")]
    [InlineData(DecodingMode.Rsr, 1f, 0, 0f, 10, 4, "top-p")]
    [InlineData(DecodingMode.Rsr, 1f, 0, 1.5f, 10, 4, "top-p")]
    [InlineData(DecodingMode.Rsr, 1f, 0, 1f, 0, 4, "max tokens")]
    [InlineData(DecodingMode.Rsr, 1f, 0, 1f, 10, 0, "gamma")]
    [InlineData(DecodingMode.Rsr, 1f, 0, 1f, 10, 65, "gamma")]
    public void Validate_BadSetting_NamesIt(DecodingMode mode, float temperature, int topK, float topP, int maxTokens, int gamma, string names)
    {
        var settings = new SessionSettings { SessionId = "v", Mode = mode, Sampling = new(temperature, topK, topP), MaxTokens = maxTokens, Gamma = gamma };
        var reason = settings.Validate();
        Assert.NotNull(reason);
        Assert.Contains(names, reason, StringComparison.Ordinal);
        Assert.Null((settings with { Mode = DecodingMode.Rsr, Sampling = new(0.8f, 5, 0.9f), MaxTokens = 10, Gamma = 4 }).Validate());
    }
}

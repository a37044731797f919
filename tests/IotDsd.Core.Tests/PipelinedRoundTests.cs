using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

/// <summary>
/// Pipelined (conditional) rounds between the real device and verifier sessions: the device drafts round r + 1 on the
/// predicted outcome of r and sends it with AfterRound = r; the verifier holds it until r is verified, verifies it when
/// the prediction came true, and otherwise answers ConditionUnmet without caching it.
/// </summary>
public sealed class PipelinedRoundTests
{
    private const int Gamma = 3;

    private static SessionSettings Greedy(string id, int maxTokens = 40, int gamma = Gamma) => new()
    {
        SessionId = id,
        Mode = DecodingMode.Greedy,
        Sampling = SamplingParams.Greedy,
        Seed = 7,
        MaxTokens = maxTokens,
        Gamma = gamma,
    };

    private static Verdict Verify(VerifierSession verifier, DraftRound round)
    {
        var feed = verifier.BeginFeed(round);
        Lossless.Target.FeedBatch([feed]);
        return verifier.Complete(round, feed.Logits.Span, 1, 0, 0);
    }

    /// <summary>What a driven pipelined generation saw.</summary>
    private sealed record Outcome(int[] Tokens, int Ahead, int Held, int Unmet, int HeldBack, long Rounds);

    /// <summary>
    /// Runs a greedy generation with rounds always sent ahead, one per predicted outcome (<paramref name="outcomes"/>).
    /// <paramref name="reorder"/> decides, per round, whether the conditional rounds reach the verifier before the round
    /// they follow (then they must be held). Counts rounds sent ahead, verified (held conditions) and all unmet.
    /// </summary>
    private static Outcome RunPipelined(TableModel draft, SessionSettings settings, int[] prompt, Func<long, bool> reorder, int outcomes = 1)
    {
        using var device = new DraftSession(draft, settings, prompt);
        using var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var round = device.PrepareRound(settings.Gamma, 4);
        int ahead = 0, held = 0, unmet = 0, heldBack = 0;
        while (true)
        {
            var next = device.PrepareAhead(settings.Gamma, outcomes);
            Assert.True(next.Count <= Math.Max(1, outcomes));
            ahead += next.Count;
            foreach (var candidate in next)
            {
                Assert.Equal(round.Round + 1, candidate.Round);
                Assert.Equal(round.Round, candidate.AfterRound);
                if (reorder(round.Round))
                {
                    Assert.Equal(RoundCheckKind.Hold, verifier.Check(candidate).Kind);
                    heldBack++;
                }
            }

            Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
            var step = device.Apply(Verify(verifier, round));
            Assert.Equal(RoundStepKind.Committed, step.Kind);

            // Each arriving now, or released after its round was verified: at most one is built on the real outcome.
            var checks = next.Select(c => (Round: c, Check: verifier.Check(c))).ToList();
            var taken = checks.Where(c => c.Check.Kind == RoundCheckKind.Ok).Select(c => c.Round).ToList();
            Assert.True(taken.Count <= 1, $"{taken.Count} predictions of round {round.Round} held");
            foreach (var (candidate, check) in checks.Where(c => c.Check.Kind != RoundCheckKind.Ok))
            {
                Assert.Equal(RoundCheckKind.Reply, check.Kind);
                Assert.Equal(VerdictKind.ConditionUnmet, check.Verdict!.Kind);
                Assert.Equal(candidate.Round, check.Verdict.Round);
                Assert.Equal(RoundStepKind.Ignored, device.Apply(check.Verdict).Kind);
                unmet++;
            }

            var promoted = device.PromoteAhead();
            Assert.Same(taken.FirstOrDefault(), promoted);
            if (promoted is not null)
            {
                Assert.Same(promoted, device.OutstandingRequest);
                held++;
                round = promoted;
                continue;
            }

            if (device.IsComplete)
            {
                break;
            }

            round = device.PrepareRound(settings.Gamma, 4);
            Assert.Equal(0, round.AfterRound);
        }

        return new Outcome([.. device.Committed.Skip(prompt.Length).Take(device.OutputLength)], ahead, held, unmet, heldBack, device.Rounds);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(0, 4)]
    [InlineData(1, 2)]
    [InlineData(2, 4)]
    public void Pipelined_Greedy_GivesTheTargetsOwnText_WhetherPredictionsHoldOrNot(int reorderEvery, int outcomes)
    {
        var totals = new int[3];
        for (var p = 0; p < 30; p++)
        {
            int[] prompt = [p % Lossless.Vocab, (p / Lossless.Vocab) % Lossless.Vocab];
            var outcome = RunPipelined(Lossless.Draft, Greedy($"pipe-{p}"), prompt, r => reorderEvery > 0 && r % reorderEvery == 0, outcomes);
            Assert.Equal(Reference.Greedy(Lossless.Target, prompt, 40), outcome.Tokens);
            totals[0] += outcome.Held;
            totals[1] += outcome.Unmet;
            totals[2] += outcome.HeldBack;
        }

        // The noisy draft makes both outcomes common: neither path went untested.
        Assert.True(totals[0] > 20, $"conditions held {totals[0]} times");
        Assert.True(totals[1] > 20, $"conditions unmet {totals[1]} times");
        Assert.Equal(reorderEvery > 0, totals[2] > 0);
    }

    [Fact]
    public void PredictingEveryOutcome_HoldsMoreOften_ThanPredictingAllAccepted()
    {
        int held1 = 0, heldAll = 0, rounds1 = 0, roundsAll = 0;
        for (var p = 0; p < 30; p++)
        {
            int[] prompt = [p % Lossless.Vocab, (p / Lossless.Vocab) % Lossless.Vocab];
            var one = RunPipelined(Lossless.Draft, Greedy($"one-{p}"), prompt, _ => false, outcomes: 1);
            var all = RunPipelined(Lossless.Draft, Greedy($"all-{p}"), prompt, _ => false, outcomes: Gamma + 1);
            Assert.Equal(one.Tokens, all.Tokens);
            (held1, heldAll, rounds1, roundsAll) = (held1 + one.Held, heldAll + all.Held, rounds1 + (int)one.Rounds, roundsAll + (int)all.Rounds);
        }

        // Same rounds either way (each is the sequential loop's); more of them were already verified when taken over.
        Assert.Equal(rounds1, roundsAll);
        Assert.True(heldAll > held1, $"every outcome predicted: {heldAll} held; all accepted only: {held1}");
    }

    [Fact]
    public void Pipelined_DraftEqualToTarget_EveryPredictionHolds_AndRoundsAreThoseOfTheSequentialLoop()
    {
        var outcome = RunPipelined(Lossless.Target, Greedy("same", maxTokens: 41), Lossless.Prompt, _ => false);
        Assert.Equal(Reference.Greedy(Lossless.Target, Lossless.Prompt, 41), outcome.Tokens);
        Assert.Equal(0, outcome.Unmet);
        Assert.Equal(outcome.Ahead, outcome.Held);

        // The same rounds as the sequential loop: 4 tokens each (3 drafts + the bonus) up to 40, then one γ = 0 round.
        // All but the first are sent ahead, save the last, whose predicted outcome (40 tokens) leaves nothing to draft.
        var stats = new DriveStats();
        var sequential = SessionDriver.Run(Lossless.Target, Lossless.Target, Greedy("same", maxTokens: 41), Lossless.Prompt, stats: stats);
        Assert.Equal(sequential, outcome.Tokens);
        Assert.Equal(11, stats.Rounds);
        Assert.Equal(stats.Rounds, outcome.Rounds);
        Assert.Equal(stats.Rounds - 2, outcome.Ahead);
    }

    [Fact]
    public void ConditionUnmet_IsNotCached_TheRealRoundIsVerified_AndLateCopiesGetTheRightAnswers()
    {
        // Find a round whose prediction fails with the noisy draft.
        using var device = new DraftSession(Lossless.Draft, Greedy("unmet"), Lossless.Prompt);
        using var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        DraftRound? stale = null;
        while (stale is null)
        {
            var round = device.PrepareRound(Gamma, 4);
            var ahead = Assert.Single(device.PrepareAhead(Gamma));
            Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
            device.Apply(Verify(verifier, round));
            if (device.PromoteAhead() is null)
            {
                stale = ahead;
            }
            else
            {
                Assert.Equal(RoundCheckKind.Ok, verifier.Check(ahead).Kind);
                device.Apply(Verify(verifier, ahead));
            }
        }

        var unmet = verifier.Check(stale);
        Assert.Equal(VerdictKind.ConditionUnmet, unmet.Verdict!.Kind);
        Assert.Equal(stale.Round, unmet.Verdict.Round);
        Assert.Equal(verifier.Epoch, unmet.Verdict.Epoch);
        Assert.Equal(0, unmet.Verdict.Accepted);
        Assert.Null(unmet.Verdict.TargetDistribution);

        // Same number, built on the real outcome: verified, not answered from a cache.
        var real = device.PrepareRound(Gamma, 4);
        Assert.Equal(stale.Round, real.Round);
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(real).Kind);
        var verdict = Verify(verifier, real);

        // A late copy of the conditional round: not the real round's verdict. A copy of the real round: its verdict.
        var late = verifier.Check(stale);
        Assert.Equal(RoundCheckKind.Reply, late.Kind);
        Assert.Equal(VerdictKind.ConditionUnmet, late.Verdict!.Kind);
        Assert.Same(verdict, verifier.Check(real).Verdict);

        // A conditional copy identical in content to the verified round is that round: it gets its verdict.
        Assert.Same(verdict, verifier.Check(real with { AfterRound = real.Round - 1 }).Verdict);
        Assert.Equal(RoundStepKind.Committed, device.Apply(verdict).Kind);

        // Older than the last verified round: stale.
        Assert.Equal(RoundCheckKind.Stale, verifier.Check(stale with { Round = stale.Round - 1, AfterRound = stale.Round - 2 }).Kind);
    }

    [Fact]
    public void HeldConditionalRound_VerifiedAfterItsRound_AndItsDuplicatesGetTheSameVerdict()
    {
        using var device = new DraftSession(Lossless.Target, Greedy("held"), Lossless.Prompt);
        using var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var first = device.PrepareRound(Gamma, 4);
        var ahead = Assert.Single(device.PrepareAhead(Gamma));
        Assert.Equal(RoundCheckKind.Hold, verifier.Check(ahead).Kind);
        Assert.Equal(RoundCheckKind.Hold, verifier.Check(ahead).Kind); // a copy: still held, nothing changed
        Assert.Equal(0, verifier.LastRound);

        Assert.Equal(RoundCheckKind.Ok, verifier.Check(first).Kind);
        device.Apply(Verify(verifier, first));
        Assert.Same(ahead, device.PromoteAhead());
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(ahead).Kind);
        var verdict = Verify(verifier, ahead);
        Assert.Equal(Gamma, verdict.Accepted);

        var copy = verifier.Check(ahead with { });
        Assert.Equal(RoundCheckKind.Reply, copy.Kind);
        Assert.Same(verdict, copy.Verdict);
        Assert.Equal(RoundStepKind.Committed, device.Apply(verdict).Kind);
    }

    [Fact]
    public void ConditionalRounds_OfAnOldEpoch_AreStale_AndMalformedOnesAreRefused()
    {
        using var pair = new SessionPair(DecodingMode.Greedy, gamma: Gamma, maxTokens: 30);
        var round = pair.Device.PrepareRound(Gamma, 4);
        var ahead = pair.Device.PrepareAhead(Gamma, Gamma + 1)[^1];
        Assert.Equal(RoundCheckKind.Error, pair.Verifier.Check(ahead with { AfterRound = ahead.Round - 2 }).Kind);
        Assert.Equal(ErrorCode.InvalidRequest, pair.Verifier.Check(ahead with { Stream = 4 }).Code);

        pair.Failover(); // the device reopens under a new epoch: what it drafted ahead is gone
        Assert.Empty(pair.Device.AheadRequests);
        Assert.Equal(RoundCheckKind.Stale, pair.Verifier.Check(ahead with { Epoch = pair.Verifier.Epoch - 1 }).Kind);
        var again = pair.Device.PrepareRound(Gamma, 4);
        Assert.Equal(round.Round, again.Round);
        Assert.Equal(RoundCheckKind.Ok, pair.Verifier.Check(again).Kind);
    }

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void SamplingModes_DraftNothingAhead(DecodingMode mode)
    {
        using var pair = new SessionPair(mode, gamma: Gamma);
        pair.Device.PrepareRound(Gamma, 4);
        Assert.Empty(pair.Device.PrepareAhead(Gamma, Gamma + 1));
    }

    [Fact]
    public void NothingIsDraftedAhead_WhenThePredictedOutcomeEndsTheGeneration()
    {
        using var device = new DraftSession(Lossless.Target, Greedy("end", maxTokens: 4), Lossless.Prompt);
        device.PrepareRound(Gamma, 4); // 3 drafts + the bonus reach max tokens
        Assert.Empty(device.PrepareAhead(Gamma));

        // Fewer drafts accepted leave room: rounds for k = 0 and 1 (k = 2 leaves one token, the round's own bonus).
        var shorter = device.PrepareAhead(Gamma, Gamma + 1);
        Assert.Equal(2, shorter.Count);
        Assert.All(shorter, r => Assert.True(r.CommittedLength - Lossless.Prompt.Length + r.Draft.Length < 4));
    }
}

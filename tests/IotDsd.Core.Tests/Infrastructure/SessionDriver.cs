using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Tests.Infrastructure;

/// <summary>Counters over many driven sessions.</summary>
internal sealed class DriveStats
{
    public long Sessions;
    public long Rounds;
    public long Drafted;
    public long Accepted;
    public long FollowUps;

    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;

    public void Add(DraftSession session)
    {
        Sessions++;
        Rounds += session.Rounds;
        Drafted += session.Drafted;
        Accepted += session.AcceptedTotal;
        FollowUps += session.FollowUps;
    }

    public override string ToString() =>
        $"sessions={Sessions} rounds={Rounds} drafted={Drafted} accepted={Accepted} alpha={AcceptanceRate:F3} followUps={FollowUps}";
}

/// <summary>
/// Drives the real <see cref="DraftSession"/> and <see cref="VerifierSession"/> against each other in memory, exactly
/// as the worker and the verifier service do over the broker.
/// </summary>
internal static class SessionDriver
{
    public const string DeviceId = "dev-1";

    /// <summary>Rewrites a verdict before the device sees it (to build broken variants).</summary>
    public delegate Verdict Tamper(Verdict verdict, DraftRound round, ReadOnlySpan<float> targetLogits, VerifierSession verifier);

    public static int[] Run(
        TableModel draft,
        TableModel target,
        SessionSettings settings,
        int[] prompt,
        int proposals = 4,
        AcceptanceRule? rule = null,
        Tamper? tamper = null,
        DriveStats? stats = null)
    {
        return RunShaped(draft, target, settings, prompt, RoundShape.Chain(settings.Gamma), proposals, rule, tamper, stats);
    }

    /// <summary>As <see cref="Run"/>, every round drafted in <paramref name="shape"/> (a tree where the session offers them).</summary>
    public static int[] RunShaped(
        TableModel draft,
        TableModel target,
        SessionSettings settings,
        int[] prompt,
        RoundShape shape,
        int proposals = 4,
        AcceptanceRule? rule = null,
        Tamper? tamper = null,
        DriveStats? stats = null,
        bool siblingResidual = true)
    {
        using var device = new DraftSession(draft, settings, prompt);
        using var verifier = new VerifierSession(target, device.OpenRequest(DeviceId), DeviceId);
        while (!device.IsComplete)
        {
            var round = shape.IsTree ? device.PrepareRound(shape, proposals) : device.PrepareRound(shape.Depth, proposals);
            var step = VerifyAndApply(device, verifier, target, round, proposals, rule, tamper, siblingResidual);
            if (step.Kind != RoundStepKind.Committed)
            {
                throw new InvalidOperationException($"round {round.Round} ended as {step.Kind}");
            }
        }

        stats?.Add(device);
        return device.Committed.Skip(prompt.Length).ToArray();
    }

    /// <summary>One round end to end, rsr follow-ups included.</summary>
    public static RoundStep VerifyAndApply(
        DraftSession device, VerifierSession verifier, TableModel target, DraftRound round, int proposals, AcceptanceRule? rule = null, Tamper? tamper = null,
        bool siblingResidual = true)
    {
        var check = verifier.Check(round);
        if (check.Kind != RoundCheckKind.Ok)
        {
            throw new InvalidOperationException($"round {round.Round} refused: {check.Kind} {check.Code} {check.Reason}");
        }

        var feed = verifier.BeginFeed(round);
        TokenTree.FeedBatch(target, [feed]);
        var verdict = verifier.Complete(round, feed.Logits.Span, batchSize: 1, queueDepth: 0, verifyMicros: 0, rule, siblingResidual);
        if (tamper is not null)
        {
            verdict = tamper(verdict, round, feed.Logits.Span, verifier);
        }

        var step = device.Apply(verdict, proposals);
        var guard = 0;
        while (step.Kind == RoundStepKind.NeedMoreProposals)
        {
            if (++guard > 10_000)
            {
                throw new InvalidOperationException("rsr follow-ups never ended");
            }

            var more = verifier.MoreProposals(step.FollowUp!);
            if (more.Kind != RoundCheckKind.Reply || more.Verdict is null)
            {
                throw new InvalidOperationException($"follow-up refused: {more.Kind} {more.Code} {more.Reason}");
            }

            step = device.Apply(more.Verdict, proposals);
        }

        return step;
    }

    public static SessionSettings Settings(int index, DecodingMode mode, SamplingParams sampling, int maxTokens, int gamma, int maxTreeNodes = 0) => new()
    {
        MaxTreeNodes = maxTreeNodes,
        SessionId = $"sess-{index}",
        Mode = mode,
        Sampling = sampling,
        Seed = DeterministicRandom.SampleSeed(0x5EED, index),
        MaxTokens = maxTokens,
        Gamma = gamma,
    };
}

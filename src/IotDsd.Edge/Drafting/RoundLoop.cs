using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// The device round loop of one generation: each round's shape from an <see cref="IRoundShaper"/> (capped by the
/// degradation ladder and by what the link can carry, <see cref="LinkFit"/>), the exchange through
/// <see cref="GenerationRun"/> (retries, reopens, failover), and — when the shape pipelines — the next round drafted on
/// the pending round's predicted outcome and sent ahead while its verdict is on the way. When the verdict makes the
/// prediction true, the round sent ahead becomes the outstanding round (its verdict already on its way); otherwise it
/// is abandoned (the verifier answers it ConditionUnmet) and the round is drafted again on the real outcome. Round
/// numbers, randomness and text are those of the sequential loop.
/// </summary>
internal sealed partial class RoundLoop(
    EdgeOptions options,
    DraftSession session,
    GenerationRun run,
    DegradationLadder ladder,
    IRoundShaper shaper,
    LinkFit fit,
    EdgeMetrics? metrics,
    ILogger logger,
    TimeProvider time)
{
    /// <summary>How many doublings of <see cref="EdgeOptions.StreamTokens"/> the streamed rounds of a run grow to.</summary>
    public const int MaxStreamDoublings = 3;

    private readonly ProposalBudget _proposals = new();
    private int _streamsInRow;
    private readonly SlowDown _slowDown = new(logger, time, session.Settings.SessionId);
    private long _draftedBefore = session.Drafted;
    private long _violations;

    public List<double> RoundMillis { get; } = [];
    public List<double> DraftMillis { get; } = [];
    public List<double> VerifyMillis { get; } = [];
    public List<int> AcceptedPerRound { get; } = [];
    public List<int> DraftedPerRound { get; } = [];
    public long Reopens { get; private set; }
    public long BatchSum { get; private set; }
    public int MaxBatch { get; private set; }
    public TimeSpan? FirstToken { get; private set; }

    /// <summary>Rounds sent ahead of their predecessor's verdict, and those whose predicted prefix came true.</summary>
    public long AheadSent { get; private set; }

    public long AheadHeld { get; private set; }

    /// <summary>The rsr proposal budget, for a resumed session to start from.</summary>
    public ProposalBudget Proposals => _proposals;

    /// <summary>The rounds drafted and sent ahead on predicted outcomes of the outstanding one, with what their
    /// observation needs.</summary>
    private sealed record Ahead(IReadOnlyList<(DraftRound Request, AheadSend Send)> Rounds, RoundShape Shape, double DraftMs, long SentAt);

    /// <summary>One round taken over from those sent ahead.</summary>
    private sealed record Promoted(DraftRound Request, AheadSend Send, RoundShape Shape, double DraftMs, long SentAt);

    private RoundShape NextShape() => ladder.Gamma <= 0 ? RoundShape.Chain(0) : Supported(shaper.Next(ladder.Gamma));

    /// <summary>What the session's verifier takes of a shape: a chain where it takes no trees, a tree no larger than it
    /// granted, nothing ahead where it does not understand conditional rounds (a verifier from before either says
    /// neither).</summary>
    private RoundShape Supported(RoundShape shape)
    {
        if (shape.IsTree && shape.Nodes > run.VerifierTreeNodes)
        {
            shape = run.VerifierTreeNodes > shape.Depth ? shape with { Nodes = run.VerifierTreeNodes } : shape with { Width = 1, Nodes = shape.Depth };
        }

        return shape.Pipeline > 0 && !run.VerifierConditionalRounds ? shape with { Pipeline = 0 } : shape;
    }

    /// <summary>The request for a round of <paramref name="shape"/>: a streamed round (verifier-side decoding) at depth 0.
    /// On the ladder's verifier-decoding rung each asks for K = <see cref="EdgeOptions.StreamTokens"/>; chosen by the
    /// shaper (a loaded verifier, §6) or the link fit, the first of a run asks for 2K and each one after it for
    /// 2^<see cref="MaxStreamDoublings"/>·K (8K): every new request leaves the session out of a pass or so while it goes
    /// up, and a run of them means the verifier stays loaded.</summary>
    private object Prepare(RoundShape shape)
    {
        var gamma = fit.Fit(shape.Depth);
        if (gamma == 0 && options.StreamTokens > 0)
        {
            var doublings = ladder.Gamma > 0 ? Math.Min(1 + (2 * _streamsInRow++), MaxStreamDoublings) : 0;
            return session.PrepareStream(options.StreamTokens << doublings, _proposals.Next);
        }

        _streamsInRow = 0;
        return session.PrepareRound(shape.Capped(gamma), _proposals.Next);
    }

    /// <summary>The shape a request was really drafted in (the session may draft a chain where a tree was asked for).</summary>
    private static RoundShape ShapeOf(object request, RoundShape asked) => request switch
    {
        DraftRound { TreeParents: { } parents } tree => asked with { Depth = Core.Models.TokenTree.Depths(parents).DefaultIfEmpty(0).Max(), Nodes = tree.Draft.Length },
        DraftRound chain => asked with { Depth = chain.Draft.Length, Width = 1, Nodes = chain.Draft.Length },
        _ => asked,
    };

    /// <summary>Runs rounds until the session is complete; <paramref name="onCommitted"/> sees each committed stretch.</summary>
    public async Task RunAsync(long started, Action<int, int> onCommitted, Action committed, CancellationToken ct)
    {
        var (sessions, fixedMs, perTokenMs) = run.VerifierLoadAtOpen;
        shaper.Prime(sessions, fixedMs, perTokenMs); // a controller may make the first round a stream (protocol §6)
        Promoted? promoted = null;
        while (!session.IsComplete)
        {
            var roundStart = time.GetTimestamp();
            RoundShape shape;
            object request;
            AheadSend? inFlight = null;
            long sentAt;
            if (promoted is not null)
            {
                (shape, request, inFlight, sentAt) = (promoted.Shape, promoted.Request, promoted.Send, promoted.SentAt);
                DraftMillis.Add(promoted.DraftMs);
            }
            else
            {
                shape = NextShape();
                request = Prepare(shape);
                DraftMillis.Add(time.GetElapsedTime(roundStart).TotalMilliseconds);
                sentAt = time.GetTimestamp();
            }

            var pipelined = promoted is not null;
            promoted = null;
            Ahead? ahead = null;
            var done = false;
            try
            {
                while (!done)
                {
                    var exchange = request is DraftRound { Stream: > 0 }
                        ? run.StreamAsync(step =>
                        {
                            FirstToken ??= time.GetElapsedTime(started);
                            onCommitted(step.Start, step.Count);
                        }, ct)
                        : run.ExchangeAsync(request, ct, inFlight);
                    inFlight = null;
                    fit.Sent(request);
                    // A round taken over from a send ahead usually has its verdict here already: take it first rather
                    // than make it wait behind the drafting of the next rounds ahead.
                    if (ahead is null && shape.Pipeline >= 1 && request is DraftRound { Stream: 0, Draft.Length: > 0 } && !exchange.IsCompleted)
                    {
                        ahead = DraftAhead(ct);
                    }

                    var reply = await exchange.ConfigureAwait(false);
                    switch (reply)
                    {
                        case null:
                        case ErrorReply { Code: ErrorCode.UnknownSession or ErrorCode.PrefixMismatch }:
                            // Moved to another verifier, or this one lacks the session: rebuild it there from the prefix.
                            if (reply is ErrorReply lost)
                            {
                                Log.Reopening(logger, session.Settings.SessionId, lost.Code, lost.Message);
                                metrics?.Error(lost.Code == ErrorCode.UnknownSession ? "unknown_session" : "prefix_mismatch");
                                session.ResetVerifier();
                            }

                            Abandon(ref ahead);
                            Reopens++;
                            pipelined = false;
                            await run.OpenAsync(ct).ConfigureAwait(false);
                            shape = NextShape();
                            request = Prepare(shape);
                            sentAt = time.GetTimestamp();
                            break;
                        case StreamCompleted streamed:
                            BatchSum += (long)Math.Round(streamed.MeanBatch);
                            MaxBatch = Math.Max(MaxBatch, streamed.MaxBatch);
                            RoundMillis.Add(time.GetElapsedTime(roundStart).TotalMilliseconds);
                            VerifyMillis.Add(0);
                            AcceptedPerRound.Add(0);
                            DraftedPerRound.Add(0);
                            _draftedBefore = session.Drafted;
                            shaper.Observe(new RoundObservation(RoundShape.Chain(0), 0, 0, default, DraftMillis[^1], 0, RoundMillis[^1], (int)Math.Round(streamed.MeanBatch), Streamed: streamed.Tokens,
                                PassFixedMs: streamed.PassCost.FixedMs, PassPerTokenMs: streamed.PassCost.PerTokenMs));
                            metrics?.Round(session.Drafted, session.AcceptedTotal, streamed.Tokens, RoundMillis[^1], DraftMillis[^1], 0, 0);
                            committed();
                            done = true;
                            break;
                        case Verdict { Kind: VerdictKind.ConditionUnmet } unmet when unmet.Round == session.Round && unmet.Epoch == session.Epoch:
                            // The round taken over from a send ahead was not verified (never expected: its prefix was
                            // checked): draft it again on what is committed.
                            metrics?.Error("condition_unmet");
                            Abandon(ref ahead);
                            shape = NextShape();
                            request = Prepare(shape);
                            pipelined = false;
                            sentAt = time.GetTimestamp();
                            break;
                        case Verdict verdict:
                            if (Apply(verdict, ref request) is not { } step)
                            {
                                break; // asked again, a follow-up, or not for the outstanding request
                            }

                            var drafted = (int)(session.Drafted - _draftedBefore);
                            Observe(verdict, ShapeOf(request, shape), shape.Depth, drafted, step, roundStart, sentAt, pipelined);
                            FirstToken ??= time.GetElapsedTime(started);
                            onCommitted(step.Start, step.Count);
                            committed();
                            if (ahead is not null && session.PromoteAhead() is { } next)
                            {
                                AheadHeld++;
                                var taken = ahead.Rounds.First(r => ReferenceEquals(r.Request, next));
                                promoted = new Promoted(next, taken.Send, ahead.Shape, ahead.DraftMs, ahead.SentAt);
                                ahead = null;
                            }

                            done = true;
                            break;
                        case ErrorReply { Code: ErrorCode.Overloaded } slow when _slowDown.Allows(session.Round):
                            await _slowDown.WaitAsync(slow.Message, ct).ConfigureAwait(false);
                            break; // refused before it was processed: the same round goes again after the pause
                        case ErrorReply error:
                            throw new GenerationException($"verifier {run.Verifier} refused round {session.Round}: {error.Code}: {error.Message}");
                        case SessionOpened:
                            break; // a late answer to an open: the request is still outstanding
                        default:
                            throw new GenerationException($"verifier {run.Verifier} sent an unexpected {reply.GetType().Name}");
                    }
                }
            }
            finally
            {
                Abandon(ref ahead);
            }
        }
    }

    /// <summary>Drafts the round after the outstanding one on its predicted outcome and sends it; null when none.</summary>
    private Ahead? DraftAhead(CancellationToken ct)
    {
        var begun = time.GetTimestamp();
        var shape = NextShape();
        IReadOnlyList<DraftRound> requests;
        using (run.Drafting())
        {
            var depth = shape.Pipeline >= 1 && shape.Depth > 0 ? fit.Fit(shape.Depth) : 0;
            requests = depth > 0 ? session.PrepareAhead(depth, options.PredictedOutcomes == 0 ? depth + 1 : options.PredictedOutcomes) : [];
        }

        if (requests.Count == 0)
        {
            return null;
        }

        var draftMs = time.GetElapsedTime(begun).TotalMilliseconds;
        AheadSent += requests.Count;
        var sends = requests.Select(r => (r, run.SendAhead(r, ct))).ToList();
        fit.Sent(requests[^1]);
        return new Ahead(sends, shape, draftMs, time.GetTimestamp());
    }

    /// <summary>Forgets the rounds sent ahead: nothing to stop, as each one's wait ends with its reply or the request
    /// timeout (a late reply is dropped).</summary>
    private static void Abandon(ref Ahead? ahead) => ahead = null;

    /// <summary>Applies a verdict; returns the committed step, or null when the request stays outstanding (maybe replaced).</summary>
    private RoundStep? Apply(Verdict verdict, ref object request)
    {
        RoundStep step;
        try
        {
            step = session.Apply(verdict, _proposals.Next);
        }
        catch (ProtocolViolationException ex)
        {
            // Nothing was committed; ask again (the verifier answers a duplicate with its cached verdict).
            Log.BadVerdict(logger, session.Round, ex.Message);
            metrics?.Error("invalid_verdict");
            if (++_violations >= options.MaxAttempts)
            {
                throw new GenerationException($"verifier {run.Verifier} kept sending invalid verdicts: {ex.Message}");
            }

            return null;
        }

        switch (step.Kind)
        {
            case RoundStepKind.NeedMoreProposals:
                request = step.FollowUp!;
                return null;
            case RoundStepKind.Ignored:
                return null; // not for the outstanding request: it is still outstanding
            default:
                _proposals.Observe(session);
                return step;
        }
    }

    private void Observe(Verdict verdict, RoundShape shape, int askedDepth, int drafted, RoundStep step, long roundStart, long sentAt, bool pipelined)
    {
        BatchSum += verdict.BatchSize;
        MaxBatch = Math.Max(MaxBatch, verdict.BatchSize);
        VerifyMillis.Add(verdict.VerifyMicros / 1000.0);
        RoundMillis.Add(time.GetElapsedTime(roundStart).TotalMilliseconds);
        AcceptedPerRound.Add(verdict.Accepted);
        DraftedPerRound.Add(drafted);
        _draftedBefore = session.Drafted;
        shaper.Observe(new RoundObservation(
            shape,
            drafted,
            verdict.Accepted,
            step.Ranks,
            DraftMillis[^1],
            VerifyMillis[^1],
            time.GetElapsedTime(sentAt).TotalMilliseconds,
            verdict.BatchSize,
            pipelined,
            pipelined,
            PassTokens: verdict.PassTokens,
            QueueDepth: verdict.QueueDepth,
            PassFixedMs: verdict.PassFixedMs,
            PassPerTokenMs: verdict.PassPerTokenMs));
        fit.Committed();
        metrics?.Round(session.Drafted, session.AcceptedTotal, step.Count, RoundMillis[^1], DraftMillis[^1], VerifyMillis[^1], askedDepth);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "Reopening session {SessionId} with the whole prefix: {Code}: {Reason}")]
        public static partial void Reopening(ILogger logger, string sessionId, ErrorCode code, string reason);

        [LoggerMessage(EventId = 304, Level = LogLevel.Warning, Message = "Invalid verdict for round {Round}, asking again: {Reason}")]
        public static partial void BadVerdict(ILogger logger, long round, string reason);
    }
}

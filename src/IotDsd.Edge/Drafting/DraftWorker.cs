using IotDsd.Core.Adaptive;
using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// The draft worker of one device: connects once, finds its verifier, and runs generations round by round. Each
/// request is resent on timeout (the verifier answers duplicates with the verdict it already sent); a verifier that
/// lost the session gets it reopened with the whole committed prefix. Timeouts fail closed.
/// </summary>
public sealed partial class DraftWorker : IAsyncDisposable
{
    private readonly EdgeOptions _options;
    private readonly ILanguageModel _draft;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly VerifierDirectory _directory;
    private MqttConnection? _connection;
    private MqttRequester? _requester;
    private Task? _pump;
    private long _downPayload;
    private long _downWire;
    private DegradationLadder? _ladder;
    private readonly EdgeMetrics? _metrics;

    public DraftWorker(EdgeOptions options, ILanguageModel draft, ILogger logger, TimeProvider? time = null, EdgeMetrics? metrics = null)
    {
        if (options.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(options));
        }

        _options = options;
        _draft = draft;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _metrics = metrics;
        _directory = new VerifierDirectory(logger, _time);
        _directory.Rejects.Rejected += reason => _metrics?.Error("verifier_status_" + reason);
    }

    /// <summary>The verifiers this device knows to be online, and the statuses it refused.</summary>
    public VerifierDirectory Verifiers => _directory;

    /// <summary>The worker's MQTT connection once started (diagnostics read its state).</summary>
    public MqttConnection? Connection => _connection;

    /// <summary>Connects, subscribes to its reply topic and to verifier presence.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        var replies = TopicScheme.DeviceReplies(_options.DeviceId);
        var settings = _options.Mqtt() with
        {
            CleanStart = false,
            SessionExpirySeconds = _options.SessionExpirySeconds,
            PublishTimeout = _options.PublishTimeout,
            TransferTimeoutCap = _options.TransferTimeoutCap,
            ReconnectMaxDelay = _options.ReconnectMaxDelay,
            Presence = PresencePayload.For(TopicScheme.DeviceStatus(_options.DeviceId), "device", _options.DeviceId, _draft.Name, sequence: _options.StateDirectory is { } dir ? PresenceSequence.Open(dir, "device", _options.DeviceId, _logger) : null),
        };
        _connection = new MqttConnection(settings, t => t == replies, _logger, _time);
        _requester = new MqttRequester(_connection, replies);
        await _connection.ConnectAsync([replies, TopicScheme.AllVerifierStatus], ct).ConfigureAwait(false);
        _pump = Task.Run(() => PumpAsync(_connection, _requester, replies), CancellationToken.None);
    }

    private async Task PumpAsync(MqttConnection connection, MqttRequester requester, string replies)
    {
        await foreach (var message in connection.Inbound.ReadAllAsync().ConfigureAwait(false))
        {
            if (message.Topic == replies)
            {
                // Undecodable replies were logged and counted by the connection; they never reach a round.
                if (message.Decoded.Ok && requester.TryComplete(message))
                {
                    Interlocked.Add(ref _downPayload, message.PayloadBytes);
                    Interlocked.Add(ref _downWire, MqttFraming.PublishBytes(message.Topic, message.PayloadBytes, null, message.CorrelationData?.Length ?? 0));
                }
            }
            else
            {
                _directory.Update(message.Topic, message.Raw, message.PayloadBytes);
            }
        }
    }

    /// <summary>The degradation level of the generation running now (normal when none runs).</summary>
    public DegradationLevel Level => _ladder?.Level ?? DegradationLevel.Normal;

    /// <summary>Runs one generation to completion; <paramref name="onCommitted"/> sees every committed token in order.</summary>
    public Task<GenerationReport> GenerateAsync(int[] prompt, SessionSettings settings, Action<int>? onCommitted, CancellationToken ct) =>
        GenerateAsync(prompt, settings, onCommitted, null, ct);

    /// <summary>
    /// Runs one generation to completion. <paramref name="onCommitted"/> sees every committed (verified) token in
    /// order — on a resumed session, those committed before the restart first. <paramref name="onUnverified"/> sees the
    /// draft-only tokens shown while the link is down (lossy, never committed), then (-1, true) where that stretch ends.
    /// </summary>
    public async Task<GenerationReport> GenerateAsync(
        int[] prompt, SessionSettings settings, Action<int>? onCommitted, Action<int, bool>? onUnverified, CancellationToken ct)
    {
        var requester = _requester ?? throw new InvalidOperationException("call StartAsync first");
        var connection = _connection!;
        var fingerprint = Fingerprint(prompt, settings);
        var shaped = !_options.Sequential && (settings.Mode == DecodingMode.Greedy || _options.AdaptGammaInSampling) ? settings with { Gamma = Math.Max(settings.Gamma, _options.MaxDepth) } : settings;
        using var store = _options.StateDirectory is { } dir ? new SessionStore(dir, _options.StateJournal, _time) : null;
        DraftSessionState? saved;
        try
        {
            saved = store?.Load(settings.SessionId, fingerprint);
        }
        catch (InvalidDataException ex)
        {
            throw new GenerationException(ex.Message);
        }

        var upPayload0 = requester.SentPayloadBytes;
        var upWire0 = requester.SentWireBytes;
        var downPayload0 = Interlocked.Read(ref _downPayload);
        var downWire0 = Interlocked.Read(ref _downWire);
        var deadLinks0 = connection.DeadLinksDetected;
        using var session = saved is null ? new DraftSession(_draft, shaped, prompt) : Restore(saved, shaped);
        var mayAdapt = settings.Mode == DecodingMode.Greedy || _options.AdaptGammaInSampling;
        var proposals = new ProposalBudget();
        if (_options.PinnedLevel is > DegradationLevel.Normal && !mayAdapt)
        {
            throw new GenerationException($"pinning the ladder at {DegradationLadder.Name(_options.PinnedLevel.Value)} changes γ; in sampling modes allow that with AdaptGammaInSampling");
        }

        var ladder = new DegradationLadder(shaped.Gamma, mayAdapt, time: _time, pinned: _options.PinnedLevel);
        var rowBytes = 0.0; // uplink wire bytes per drafted row, from the last committed round
        var adaptive = !_options.Sequential && mayAdapt ? ShapeController.ForChains(shaped.Gamma, settings.Gamma, transferMs: (shape, _) => connection.UplinkBytesPerSecond is > 0 and var bps ? shape.Nodes * rowBytes * 1000 / bps : 0) : null;
        int NextGamma() => FitLink(settings, adaptive is null || ladder.Gamma <= 0 ? ladder.Gamma : adaptive.Next(ladder.Gamma).Depth, rowBytes, mayAdapt, connection);
        DraftRound Prepare(int gamma) => gamma == 0 && _options.StreamTokens > 0
            ? session.PrepareStream(_options.StreamTokens, proposals.Next) // verifier-side decoding, streamed down
            : session.PrepareRound(_options.Shape?.Capped(gamma) ?? Core.Adaptive.RoundShape.Chain(gamma), proposals.Next);
        ladder.Changed += (from, to) => Log.LevelChanged(_logger, settings.SessionId, DegradationLadder.Name(from), DegradationLadder.Name(to), to == DegradationLevel.Offline);
        _ladder = ladder;
        var faults = new FaultStats();
        using var run = new GenerationRun(_options, connection, requester, _directory, session, ladder, faults, onUnverified, _metrics, _logger, _time);
        var resumed = saved is null ? 0 : Math.Min(session.Generated, settings.MaxTokens);
        if (saved is not null)
        {
            Log.Resumed(_logger, settings.SessionId, resumed, session.Round);
            store!.Save(session.Snapshot(), fingerprint); // the new epoch is on disk (fsynced) before any open carries it
            proposals.Observe(session);
            Emit(session, session.PromptLength, session.Committed.Count - session.PromptLength, onCommitted);
        }

        var started = _time.GetTimestamp();
        TimeSpan? firstToken = null;
        long reopens = 0, batchSum = 0, violations = 0;
        var slowDown = new SlowDown(_logger, _time, settings.SessionId);
        var maxBatch = 0;
        var roundMillis = new List<double>();
        var draftMillis = new List<double>();
        var verifyMillis = new List<double>();
        var acceptedPerRound = new List<int>();
        var draftedPerRound = new List<int>();
        var draftedBefore = session.Drafted;
        _metrics?.SessionStarted();

        await run.ChooseVerifierAsync(ct).ConfigureAwait(false);
        await run.OpenAsync(ct).ConfigureAwait(false);
        while (!session.IsComplete)
        {
            var roundStart = _time.GetTimestamp();
            var gamma = NextGamma();
            object request = Prepare(gamma);
            draftMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
            var done = false;
            while (!done)
            {
                var reply = request is DraftRound { Stream: > 0 }
                    ? await run.StreamAsync(step =>
                    {
                        firstToken ??= _time.GetElapsedTime(started);
                        Emit(session, step.Start, step.Count, onCommitted);
                    }, ct).ConfigureAwait(false)
                    : await run.ExchangeAsync(request, ct).ConfigureAwait(false);
                switch (reply)
                {
                    case null:
                    case ErrorReply { Code: ErrorCode.UnknownSession or ErrorCode.PrefixMismatch }:
                        // Moved to another verifier, or this one lacks the session: rebuild it there from the prefix.
                        if (reply is ErrorReply lost)
                        {
                            Log.Reopening(_logger, settings.SessionId, lost.Code, lost.Message);
                            _metrics?.Error(lost.Code == ErrorCode.UnknownSession ? "unknown_session" : "prefix_mismatch");
                            session.ResetVerifier();
                        }

                        reopens++;
                        await run.OpenAsync(ct).ConfigureAwait(false);
                        gamma = NextGamma();
                        request = Prepare(gamma);
                        break;
                    case StreamCompleted streamed:
                        batchSum += (long)Math.Round(streamed.MeanBatch);
                        maxBatch = Math.Max(maxBatch, streamed.MaxBatch);
                        roundMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
                        verifyMillis.Add(0);
                        acceptedPerRound.Add(0);
                        draftedPerRound.Add(0);
                        _metrics?.Round(session.Drafted, session.AcceptedTotal, streamed.Tokens, roundMillis[^1], draftMillis[^1], 0, 0);
                        run.Committed(store, fingerprint);
                        done = true;
                        break;
                    case Verdict verdict:
                        RoundStep step;
                        try
                        {
                            step = session.Apply(verdict, proposals.Next);
                        }
                        catch (ProtocolViolationException ex)
                        {
                            // Nothing was committed; ask again (the verifier answers a duplicate with its cached verdict).
                            Log.BadVerdict(_logger, session.Round, ex.Message);
                            _metrics?.Error("invalid_verdict");
                            if (++violations >= _options.MaxAttempts)
                            {
                                throw new GenerationException($"verifier {run.Verifier} kept sending invalid verdicts: {ex.Message}");
                            }

                            break;
                        }

                        if (step.Kind == RoundStepKind.NeedMoreProposals)
                        {
                            request = step.FollowUp!;
                            break;
                        }

                        if (step.Kind == RoundStepKind.Ignored)
                        {
                            break; // not for the outstanding request: it is still outstanding
                        }

                        proposals.Observe(session);
                        batchSum += verdict.BatchSize;
                        maxBatch = Math.Max(maxBatch, verdict.BatchSize);
                        verifyMillis.Add(verdict.VerifyMicros / 1000.0);
                        roundMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
                        acceptedPerRound.Add(verdict.Accepted);
                        draftedPerRound.Add((int)(session.Drafted - draftedBefore));
                        adaptive?.Observe(new RoundObservation(RoundShape.Chain(draftedPerRound[^1]), draftedPerRound[^1], verdict.Accepted, default, draftMillis[^1], verifyMillis[^1], roundMillis[^1] - draftMillis[^1], verdict.BatchSize));
                        draftedBefore = session.Drafted;
                        rowBytes = gamma > 0 && request is DraftRound ? connection.LastPublishBytes / (double)gamma : rowBytes;
                        _metrics?.Round(session.Drafted, session.AcceptedTotal, step.Count, roundMillis[^1], draftMillis[^1], verifyMillis[^1], gamma);
                        firstToken ??= _time.GetElapsedTime(started);
                        Emit(session, step.Start, step.Count, onCommitted);
                        run.Committed(store, fingerprint);
                        done = true;
                        break;
                    case ErrorReply { Code: ErrorCode.Overloaded } slow when slowDown.Allows(session.Round):
                        await slowDown.WaitAsync(slow.Message, ct).ConfigureAwait(false);
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

        await CloseAsync(session, TopicScheme.VerifierRounds(run.Verifier, _options.DeviceId), ct).ConfigureAwait(false);
        store?.Delete(settings.SessionId);
        var tokens = session.Committed.Skip(session.PromptLength).Take(session.OutputLength).ToArray();
        return new GenerationReport
        {
            SessionId = settings.SessionId,
            Mode = settings.Mode,
            Gamma = settings.Gamma,
            Seed = settings.Seed,
            Tokens = tokens,
            StopReason = session.StopReason,
            VerifierId = run.Verifier,
            Rounds = session.Rounds,
            Drafted = session.Drafted,
            Accepted = session.AcceptedTotal,
            FollowUps = session.FollowUps,
            Retries = faults.Retries,
            Reopens = reopens,
            Elapsed = _time.GetElapsedTime(started),
            TimeToFirstToken = firstToken ?? TimeSpan.Zero,
            UplinkPayloadBytes = requester.SentPayloadBytes - upPayload0,
            UplinkWireBytes = requester.SentWireBytes - upWire0,
            DownlinkPayloadBytes = Interlocked.Read(ref _downPayload) - downPayload0,
            DownlinkWireBytes = Interlocked.Read(ref _downWire) - downWire0,
            RoundMillis = roundMillis,
            DraftMillis = draftMillis,
            VerifyMillis = verifyMillis,
            AcceptedPerRound = acceptedPerRound,
            DraftedPerRound = draftedPerRound,
            MeanBatch = session.Rounds == 0 ? 0 : (double)batchSum / session.Rounds,
            MaxBatch = maxBatch,
            StateBytesWritten = store?.BytesWritten ?? 0,
            StateSyncs = store?.Syncs ?? 0,
            Faults = new FaultReport
            {
                ResumedTokens = resumed,
                LinkDrops = faults.LinkDrops,
                DeadLinks = connection.DeadLinksDetected - deadLinks0,
                UnverifiedTokensShown = faults.UnverifiedTokens,
                RecoveryMillis = faults.RecoveryMillis,
                FailoverMillis = faults.FailoverMillis,
                LevelTransitions = ladder.Transitions,
                MillisAtLevel = ladder.TimeAtLevel().ToDictionary(kv => DegradationLadder.Name(kv.Key), kv => kv.Value.TotalMilliseconds),
            },
        };
    }

    private DraftSession Restore(DraftSessionState saved, SessionSettings settings)
    {
        try
        {
            return new DraftSession(_draft, settings, saved);
        }
        catch (ArgumentException ex)
        {
            throw new GenerationException($"saved session in {_options.StateDirectory} cannot be resumed: {ex.Message}; delete it to start over");
        }
    }

    private static void Emit(DraftSession session, int start, int count, Action<int>? onCommitted)
    {
        var end = session.PromptLength + session.OutputLength; // nothing past max tokens or the end-of-sequence token
        for (var i = start; i < start + count && i < end; i++)
        {
            onCommitted?.Invoke(session.Committed[i]);
        }
    }

    /// <summary>What a saved session must match to be resumed: the prompt and every setting that shapes the text.</summary>
    private static string Fingerprint(int[] prompt, SessionSettings s) => string.Create(
        System.Globalization.CultureInfo.InvariantCulture,
        $"mode={s.Mode.Name()} t={s.Sampling.Temperature} k={s.Sampling.TopK} p={s.Sampling.TopP} seed={s.Seed} max={s.MaxTokens} gamma={s.Gamma} prompt={PrefixDigest.Of(prompt):x16}/{prompt.Length}")
        + (s.StopTokens.Count == 0 ? "" : $" stop={string.Join(',', s.StopTokens)}");

    private async Task CloseAsync(DraftSession session, string topic, CancellationToken ct)
    {
        try
        {
            await _connection!.PublishAsync(topic, new CloseSession { SessionId = session.Settings.SessionId, Epoch = session.Epoch }, null, null, ct).ConfigureAwait(false);
        }
        catch (MqttPublishException ex)
        {
            Log.CloseFailed(_logger, session.Settings.SessionId, ex.Message); // the verifier expires it instead
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        if (_pump is not null)
        {
            await _pump.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The step-down for a link too slow for the round's shape: a round of <paramref name="gamma"/> rows of
    /// <paramref name="rowBytes"/> must go up within <see cref="EdgeOptions.TransferTimeoutCap"/> at the measured uplink
    /// (base publish timeout + bytes / bandwidth × <see cref="MqttConnection.TransferSafetyFactor"/>). When it cannot,
    /// γ steps down to the largest that fits (0, the verifier-decoding rung, when not even one row fits) where γ may
    /// adapt (greedy, or sampling with <see cref="EdgeOptions.AdaptGammaInSampling"/>); in a sampling mode where it may
    /// not, the generation fails closed with the reason rather than resending a round that can never be acknowledged.
    /// </summary>
    private int FitLink(SessionSettings settings, int gamma, double rowBytes, bool mayAdapt, MqttConnection connection)
    {
        if (gamma <= 0 || rowBytes <= 0 || connection.UplinkBytesPerSecond is not { } bps)
        {
            return gamma;
        }

        var seconds = (_options.TransferTimeoutCap - _options.PublishTimeout).TotalSeconds;
        var fit = (int)Math.Min(gamma, Math.Floor(seconds * bps / MqttConnection.TransferSafetyFactor / rowBytes));
        if (fit >= gamma)
        {
            return gamma;
        }

        if (!mayAdapt)
        {
            throw new GenerationException(string.Create(
                System.Globalization.CultureInfo.InvariantCulture,
                $"a {settings.Mode.Name()} round of γ = {gamma} ({gamma * rowBytes:0} bytes) cannot go up within the transfer timeout cap of {_options.TransferTimeoutCap.TotalSeconds:0} s at the measured uplink of {bps:0} B/s; lower --gamma, pick a sparser mode (dssd, rsr), or let γ step down with --adapt-in-sampling"));
        }

        var to = Math.Max(0, fit);
        Log.SteppedDown(_logger, settings.SessionId, gamma, to, bps, _options.TransferTimeoutCap.TotalSeconds);
        return to;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 321, Level = LogLevel.Warning, Message = "Session {SessionId}: a round of γ = {From} cannot go up within {CapSeconds} s at the measured uplink of {BytesPerSecond} B/s; γ steps down to {To}")]
        public static partial void SteppedDown(ILogger logger, string sessionId, int from, int to, double bytesPerSecond, double capSeconds);

        [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "Reopening session {SessionId} with the whole prefix: {Code}: {Reason}")]
        public static partial void Reopening(ILogger logger, string sessionId, ErrorCode code, string reason);

        [LoggerMessage(EventId = 304, Level = LogLevel.Warning, Message = "Invalid verdict for round {Round}, asking again: {Reason}")]
        public static partial void BadVerdict(ILogger logger, long round, string reason);

        [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "Could not close session {SessionId}: {Reason}")]
        public static partial void CloseFailed(ILogger logger, string sessionId, string reason);

        [LoggerMessage(EventId = 306, Level = LogLevel.Warning, Message = "Session {SessionId} degradation level {From} -> {To} (lossy: {Lossy})")]
        public static partial void LevelChanged(ILogger logger, string sessionId, string from, string to, bool lossy);

        [LoggerMessage(EventId = 307, Level = LogLevel.Information, Message = "Resumed session {SessionId} from saved state: {Tokens} tokens committed, round {Round}")]
        public static partial void Resumed(ILogger logger, string sessionId, int tokens, long round);
    }
}

/// <summary>A generation could not complete; the message says why.</summary>
public sealed class GenerationException(string message) : Exception(message);

/// <summary>
/// rsr: how many proposals to ask for, from the observed rate r at which proposals are accepted: enough that all
/// fail with probability about 2 %, m = ⌈ln 0.02 / ln(1 − r)⌉, between 1 and 32.
/// </summary>
internal sealed class ProposalBudget
{
    public int Next { get; private set; } = 4;

    public void Observe(DraftSession session)
    {
        var rate = (session.ProposalsAccepted + 1.0) / (session.ProposalsExamined + 2.0);
        Next = rate >= 0.95 ? 1 : Math.Clamp((int)Math.Ceiling(Math.Log(0.02) / Math.Log(1 - rate)), 1, 32);
    }
}

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
        var shaped = RoundShapers.Shaped(_options, settings);
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
        if (_options.PinnedLevel is > DegradationLevel.Normal && !mayAdapt)
        {
            throw new GenerationException($"pinning the ladder at {DegradationLadder.Name(_options.PinnedLevel.Value)} changes γ; in sampling modes allow that with AdaptGammaInSampling");
        }

        var ladder = new DegradationLadder(shaped.Gamma, mayAdapt, time: _time, pinned: _options.PinnedLevel);
        ladder.Changed += (from, to) => Log.LevelChanged(_logger, settings.SessionId, DegradationLadder.Name(from), DegradationLadder.Name(to), to == DegradationLevel.Offline);
        _ladder = ladder;
        var faults = new FaultStats();
        using var run = new GenerationRun(_options, connection, requester, _directory, session, ladder, faults, onUnverified, _metrics, _logger, _time);
        var fit = new LinkFit(_options, settings, mayAdapt, connection, _logger);
        var loop = new RoundLoop(_options, session, run, ladder, RoundShapers.For(_options, session, settings, mayAdapt, fit, connection), fit, _metrics, _logger, _time);
        var resumed = saved is null ? 0 : Math.Min(session.Generated, settings.MaxTokens);
        if (saved is not null)
        {
            Log.Resumed(_logger, settings.SessionId, resumed, session.Round);
            store!.Save(session.Snapshot(), fingerprint); // the new epoch is on disk (fsynced) before any open carries it
            loop.Proposals.Observe(session);
            Emit(session, session.PromptLength, session.Committed.Count - session.PromptLength, onCommitted);
        }

        var started = _time.GetTimestamp();
        _metrics?.SessionStarted();
        await run.ChooseVerifierAsync(ct).ConfigureAwait(false);
        await run.OpenAsync(ct).ConfigureAwait(false);
        await loop.RunAsync(started, (start, count) => Emit(session, start, count, onCommitted), () => run.Committed(store, fingerprint), ct).ConfigureAwait(false);

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
            Reopens = loop.Reopens,
            RoundsAhead = loop.AheadSent,
            RoundsAheadHeld = loop.AheadHeld,
            Elapsed = _time.GetElapsedTime(started),
            TimeToFirstToken = loop.FirstToken ?? TimeSpan.Zero,
            UplinkPayloadBytes = requester.SentPayloadBytes - upPayload0,
            UplinkWireBytes = requester.SentWireBytes - upWire0,
            DownlinkPayloadBytes = Interlocked.Read(ref _downPayload) - downPayload0,
            DownlinkWireBytes = Interlocked.Read(ref _downWire) - downWire0,
            RoundMillis = loop.RoundMillis,
            DraftMillis = loop.DraftMillis,
            VerifyMillis = loop.VerifyMillis,
            AcceptedPerRound = loop.AcceptedPerRound,
            DraftedPerRound = loop.DraftedPerRound,
            MeanBatch = session.Rounds == 0 ? 0 : (double)loop.BatchSum / session.Rounds,
            MaxBatch = loop.MaxBatch,
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

    private static partial class Log
    {
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

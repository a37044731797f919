using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
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
    private readonly VerifierDirectory _directory = new();
    private MqttConnection? _connection;
    private MqttRequester? _requester;
    private Task? _pump;
    private long _downPayload;
    private long _downWire;
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
    }

    /// <summary>The worker's MQTT connection once started (diagnostics read its state).</summary>
    public MqttConnection? Connection => _connection;

    /// <summary>Connects, subscribes to its reply topic and to verifier presence.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        var replies = TopicScheme.DeviceReplies(_options.DeviceId);
        var settings = new MqttSettings
        {
            Broker = _options.Broker,
            ClientId = $"iotdsd-device-{_options.DeviceId}",
            Username = _options.Username,
            Password = _options.Password,
            Tls = _options.Tls,
            MaxPayloadBytes = _options.MaxPayloadBytes,
            Presence = PresencePayload.For(TopicScheme.DeviceStatus(_options.DeviceId), "device", _options.DeviceId, _draft.Name),
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
                _directory.Update(message.Topic, message.Raw);
            }
        }
    }

    /// <summary>Runs one generation to completion; <paramref name="onCommitted"/> sees every committed token in order.</summary>
    public async Task<GenerationReport> GenerateAsync(int[] prompt, SessionSettings settings, Action<int>? onCommitted, CancellationToken ct)
    {
        var requester = _requester ?? throw new InvalidOperationException("call StartAsync first");
        var verifier = _options.VerifierId
            ?? await _directory.WaitForAsync(settings.SessionId, _options.DiscoveryTimeout, _time, ct).ConfigureAwait(false)
            ?? throw new GenerationException($"no verifier is online on {_options.Broker} (waited {_options.DiscoveryTimeout.TotalSeconds:0} s for a retained status on {TopicScheme.AllVerifierStatus})");
        var topic = TopicScheme.VerifierRounds(verifier, _options.DeviceId);
        var upPayload0 = requester.SentPayloadBytes;
        var upWire0 = requester.SentWireBytes;
        var downPayload0 = Interlocked.Read(ref _downPayload);
        var downWire0 = Interlocked.Read(ref _downWire);
        using var session = new DraftSession(_draft, settings, prompt);
        var started = _time.GetTimestamp();
        TimeSpan? firstToken = null;
        long retries = 0, reopens = 0, batchSum = 0, violations = 0;
        var roundMillis = new List<double>();
        var draftMillis = new List<double>();
        var verifyMillis = new List<double>();
        var acceptedPerRound = new List<int>();
        var draftedPerRound = new List<int>();
        long draftedBefore = 0;
        var proposals = new ProposalBudget();
        _metrics?.SessionStarted();
        await OpenAsync(session, topic, ct).ConfigureAwait(false);
        var roundStart = _time.GetTimestamp();
        object request = session.PrepareRound(settings.Gamma, proposals.Next);
        draftMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
        while (true)
        {
            var (reply, attempts) = await SendAsync(topic, request, ct).ConfigureAwait(false);
            retries += attempts - 1;
            switch (reply)
            {
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
                            throw new GenerationException($"verifier {verifier} kept sending invalid verdicts: {ex.Message}");
                        }

                        continue;
                    }

                    if (step.Kind == RoundStepKind.NeedMoreProposals)
                    {
                        request = step.FollowUp!;
                        continue;
                    }

                    if (step.Kind == RoundStepKind.Ignored)
                    {
                        continue; // a late reply to an earlier round; the current request is still outstanding
                    }

                    proposals.Observe(session);
                    acceptedPerRound.Add(verdict.Accepted);
                    draftedPerRound.Add((int)(session.Drafted - draftedBefore));
                    draftedBefore = session.Drafted;
                    batchSum += verdict.BatchSize;
                    verifyMillis.Add(verdict.VerifyMicros / 1000.0);
                    roundMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
                    _metrics?.Round(session.Drafted, session.AcceptedTotal, step.Count, roundMillis[^1], draftMillis[^1], verifyMillis[^1], settings.Gamma);
                    firstToken ??= _time.GetElapsedTime(started);
                    for (var i = step.Start; i < step.Start + step.Count && i - session.PromptLength < settings.MaxTokens; i++)
                    {
                        onCommitted?.Invoke(session.Committed[i]);
                    }

                    break;
                case ErrorReply { Code: ErrorCode.UnknownSession or ErrorCode.PrefixMismatch } error:
                    Log.Reopening(_logger, settings.SessionId, error.Code, error.Message);
                    reopens++;
                    _metrics?.Error(error.Code == ErrorCode.UnknownSession ? "unknown_session" : "prefix_mismatch");
                    session.ResetVerifier();
                    await OpenAsync(session, topic, ct).ConfigureAwait(false);
                    break;
                case ErrorReply error:
                    throw new GenerationException($"verifier {verifier} refused round {session.Round}: {error.Code}: {error.Message}");
                default:
                    throw new GenerationException($"verifier {verifier} sent an unexpected {reply.GetType().Name}");
            }

            if (session.IsComplete)
            {
                break;
            }

            roundStart = _time.GetTimestamp();
            request = session.PrepareRound(settings.Gamma, proposals.Next);
            draftMillis.Add(_time.GetElapsedTime(roundStart).TotalMilliseconds);
        }

        await CloseAsync(session, topic, ct).ConfigureAwait(false);
        var tokens = session.Committed.Skip(session.PromptLength).Take(settings.MaxTokens).ToArray();
        return new GenerationReport
        {
            SessionId = settings.SessionId,
            Mode = settings.Mode,
            Gamma = settings.Gamma,
            Seed = settings.Seed,
            Tokens = tokens,
            VerifierId = verifier,
            Rounds = session.Rounds,
            Drafted = session.Drafted,
            Accepted = session.AcceptedTotal,
            FollowUps = session.FollowUps,
            Retries = retries,
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
        };
    }

    private async Task OpenAsync(DraftSession session, string topic, CancellationToken ct)
    {
        var (reply, _) = await SendAsync(topic, session.OpenRequest(_options.DeviceId), ct).ConfigureAwait(false);
        if (reply is ErrorReply error)
        {
            throw new GenerationException($"verifier refused to open session {session.Settings.SessionId}: {error.Code}: {error.Message}");
        }

        if (reply is not SessionOpened)
        {
            throw new GenerationException($"verifier answered the open request with {reply.GetType().Name}");
        }
    }

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

    /// <summary>Sends a request, resending it on timeout; fails closed after the configured attempts.</summary>
    private async Task<(object Reply, int Attempts)> SendAsync(string topic, object request, CancellationToken ct)
    {
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            InboundMessage? reply;
            try
            {
                reply = await _requester!.RequestAsync(topic, request, _options.RequestTimeout, ct).ConfigureAwait(false);
            }
            catch (MqttPublishException ex)
            {
                Log.SendFailed(_logger, attempt, ex.Message);
                _metrics?.Error("publish_failed");
                await Task.Delay(MqttConnection.Backoff(attempt), _time, ct).ConfigureAwait(false);
                continue;
            }

            if (reply is null)
            {
                Log.Timeout(_logger, attempt, _options.RequestTimeout.TotalMilliseconds);
                _metrics?.Error("timeout");
                continue;
            }

            return (reply.Decoded.Message!, attempt);
        }

        throw new GenerationException($"no reply from the verifier after {_options.MaxAttempts} attempts of {_options.RequestTimeout.TotalSeconds:0.#} s");
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
        [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "Reopening session {SessionId} with the whole prefix: {Code}: {Reason}")]
        public static partial void Reopening(ILogger logger, string sessionId, ErrorCode code, string reason);

        [LoggerMessage(EventId = 301, Level = LogLevel.Warning, Message = "No reply within {TimeoutMs} ms (attempt {Attempt}); resending")]
        public static partial void Timeout(ILogger logger, int attempt, double timeoutMs);

        [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "Send attempt {Attempt} failed: {Reason}")]
        public static partial void SendFailed(ILogger logger, int attempt, string reason);

        [LoggerMessage(EventId = 304, Level = LogLevel.Warning, Message = "Invalid verdict for round {Round}, asking again: {Reason}")]
        public static partial void BadVerdict(ILogger logger, long round, string reason);

        [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "Could not close session {SessionId}: {Reason}")]
        public static partial void CloseFailed(ILogger logger, string sessionId, string reason);
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

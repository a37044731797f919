using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// One generation riding out faults: each request is resent under one correlation id until answered (the verifier
/// answers duplicates with the verdict it already sent), at once when the link returns; while the link is down it
/// waits (showing draft-only text flagged unverified), fails over when its verifier's status goes offline, reopens
/// with the whole prefix when a verifier lacks the session, and saves the session after every committed round.
/// Fails closed when nothing has answered for <see cref="EdgeOptions.GiveUpAfter"/>.
/// </summary>
internal sealed partial class GenerationRun : IDisposable
{
    private readonly EdgeOptions _options;
    private readonly MqttConnection _connection;
    private readonly MqttRequester _requester;
    private readonly VerifierDirectory _directory;
    private readonly DraftSession _session;
    private readonly DegradationLadder _ladder;
    private readonly FaultStats _faults;
    private readonly Action<int, bool>? _onUnverified;
    private readonly EdgeMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private CancellationTokenSource? _attempt;
    private long _lastProgress;
    private long _reconnectedAt; // 0: no reconnect since the last committed round
    private readonly HashSet<string> _refused = new(StringComparer.Ordinal); // verifiers that refused the session as overloaded, or went silent
    private int _silentTimeouts; // request timeouts in a row with the link up

    public GenerationRun(
        EdgeOptions options, MqttConnection connection, MqttRequester requester, VerifierDirectory directory, DraftSession session,
        DegradationLadder ladder, FaultStats faults, Action<int, bool>? onUnverified, EdgeMetrics? metrics, ILogger logger, TimeProvider time)
    {
        _options = options;
        _connection = connection;
        _requester = requester;
        _directory = directory;
        _session = session;
        _ladder = ladder;
        _faults = faults;
        _onUnverified = onUnverified;
        _metrics = metrics;
        _logger = logger;
        _time = time;
        _lastProgress = time.GetTimestamp();
        _connection.Disconnected += OnDisconnected;
        _connection.Connected += OnConnected;
        _directory.WentOffline += OnVerifierOffline;
    }

    /// <summary>The verifier the session is on now.</summary>
    public string Verifier { get; private set; } = "";

    private string Topic => TopicScheme.VerifierRounds(Verifier, _options.DeviceId);

    /// <summary>What placement hashes: the device as well as the session, so devices naming sessions alike still spread.</summary>
    private string PlacementKey => $"{_options.DeviceId}/{_session.Settings.SessionId}";

    private void OnDisconnected()
    {
        _faults.LinkDrop();
        lock (_lock)
        {
            _attempt?.Cancel(); // the request in flight is gone with the link: replay it when the link returns
        }
    }

    /// <summary>
    /// The session's verifier went offline (its last will): the request in flight will not be answered, so stop
    /// waiting for it now rather than at its timeout; the next attempt moves the session to a live verifier.
    /// </summary>
    private void OnVerifierOffline(string verifierId)
    {
        if (_options.VerifierId is not null || verifierId != Verifier)
        {
            return;
        }

        lock (_lock)
        {
            _attempt?.Cancel();
        }
    }

    private void OnConnected(bool sessionPresent) => Interlocked.Exchange(ref _reconnectedAt, Math.Max(1, _time.GetTimestamp()));

    /// <summary>Picks the verifier: the pinned one, or the least-loaded live one.</summary>
    public async Task ChooseVerifierAsync(CancellationToken ct)
    {
        if (_options.VerifierId is null && await _directory.WaitForAsync(PlacementKey, _options.DiscoveryTimeout, _time, ct).ConfigureAwait(false) is not null)
        {
            await _directory.SettleAsync(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), _time, ct).ConfigureAwait(false);
        }

        Verifier = _options.VerifierId
            ?? _directory.Pick(PlacementKey)
            ?? throw new GenerationException($"no verifier is online on {_options.Broker} (waited {_options.DiscoveryTimeout.TotalSeconds:0} s for a retained status on {TopicScheme.AllVerifierStatus})");
    }

    /// <summary>Opens (or reopens, under the session's current epoch) the session on the current verifier.</summary>
    public async Task OpenAsync(CancellationToken ct)
    {
        while (true)
        {
            var reply = await ExchangeAsync(_session.OpenRequest(_options.DeviceId), ct).ConfigureAwait(false);
            switch (reply)
            {
                case null:
                    continue; // moved to another verifier: open there
                case SessionOpened opened when opened.Epoch == _session.Epoch:
                    Opened(opened);
                    return;
                case ErrorReply { Code: ErrorCode.Overloaded } full when MoveAway(full.Message):
                    continue; // full (or over a per-device limit) there: open on another verifier
                case ErrorReply { Code: ErrorCode.EpochSuperseded } superseded when superseded.SessionId == _session.Settings.SessionId:
                    // The id was used before (an earlier generation, or this device before a restart without saved
                    // state): reopen above the epoch the verifier knows, so no late message of the old one can pass as ours.
                    Log.Superseded(_logger, _session.Settings.SessionId, Verifier, superseded.Epoch);
                    try
                    {
                        _session.Supersede(superseded.Epoch);
                    }
                    catch (ProtocolViolationException ex)
                    {
                        throw new GenerationException($"verifier {Verifier} refused to open session {_session.Settings.SessionId}: {ex.Message}");
                    }

                    continue;
                case ErrorReply error:
                    throw new GenerationException($"verifier refused to open session {_session.Settings.SessionId}: {error.Code}: {error.Message}");
                default:
                    throw new GenerationException($"verifier answered the open request with {reply.GetType().Name}");
            }
        }
    }

    /// <summary>
    /// After <see cref="EdgeOptions.SilentVerifierTimeouts"/> unanswered requests with the link up: moves an unpinned
    /// session off a verifier whose status still says online, if another live verifier is left.
    /// </summary>
    private bool LeaveSilent()
    {
        _silentTimeouts = 0;
        if (_options.VerifierId is not null || _directory.Pick(PlacementKey, new HashSet<string>(_refused, StringComparer.Ordinal) { Verifier }) is not { } other)
        {
            return false;
        }

        Log.Silent(_logger, _session.Settings.SessionId, Verifier, _options.SilentVerifierTimeouts, other);
        _refused.Add(Verifier);
        _faults.StartFailover(_lastProgress);
        Verifier = other;
        _session.ResetVerifier();
        return true;
    }

    /// <summary>After an overloaded refusal: moves an unpinned session to another live verifier, if one is left.</summary>
    private bool MoveAway(string reason)
    {
        _refused.Add(Verifier);
        if (_options.VerifierId is not null || _directory.Pick(PlacementKey, _refused) is not { } other)
        {
            return false;
        }

        Log.Refused(_logger, _session.Settings.SessionId, Verifier, other, reason);
        Verifier = other;
        _session.ResetVerifier();
        return true;
    }

    /// <summary>
    /// Sends <paramref name="request"/> until something answers it. Returns null when the session moved to another
    /// verifier (the caller reopens there and rebuilds the request). With <paramref name="sent"/> (the same request,
    /// already sent ahead to this verifier) the first attempt waits for that send's reply instead of sending again.
    /// </summary>
    public Task<object?> ExchangeAsync(object request, CancellationToken ct, AheadSend? sent = null)
    {
        var id = _requester.NewCorrelationId();
        return RetryAsync(
            async (attempt, token) =>
            {
                if (attempt == 1 && sent is not null && sent.Verifier == Verifier)
                {
                    return await TakeOverAsync(sent, token).ConfigureAwait(false);
                }

                var reply = await _requester.RequestAsync(Topic, request, _options.RequestTimeout, id, token).ConfigureAwait(false);
                return reply is null ? Quiet : new Answer(reply.Decoded.Message!);
            },
            attempt => Log.Timeout(_logger, attempt, _options.RequestTimeout.TotalMilliseconds),
            ct);
    }

    /// <summary>What one attempt came to: the verifier's answer, or <see cref="Quiet"/> (nothing within the request timeout).</summary>
    private sealed record Answer(object Message);

    private static readonly Answer Quiet = new(new object());

    /// <summary>
    /// The one retry loop of a run, for exchanges and streamed rounds alike. Each attempt waits for the link, checks the
    /// give-up time and moves the session off an offline verifier (<see cref="BeginAttemptAsync"/>), then runs
    /// <paramref name="attemptAsync"/> under a cancellation that a lost link or the verifier's last will trips (the
    /// attempt is then replayed). A failed publish is retried after a backoff while the link is up. A quiet attempt
    /// (<paramref name="onQuiet"/> logs it) counts as a failure on the ladder and, with the link up, towards
    /// <see cref="EdgeOptions.SilentVerifierTimeouts"/>, after which an unpinned session leaves the silent verifier.
    /// Returns the answer, or null when the session moved to another verifier (the caller reopens there).
    /// </summary>
    private async Task<object?> RetryAsync(Func<int, CancellationToken, Task<Answer>> attemptAsync, Action<int> onQuiet, CancellationToken ct)
    {
        var attempt = 0;
        while (true)
        {
            if (attempt > 0)
            {
                await IdleAsync().ConfigureAwait(false); // a retry may touch the session: not while the loop drafts on it
            }

            using var cts = await BeginAttemptAsync(++attempt, ct).ConfigureAwait(false);
            if (cts is null)
            {
                return null;
            }

            Answer answer;
            try
            {
                answer = await attemptAsync(attempt, cts.Token).ConfigureAwait(false);
            }
            catch (MqttPublishException ex)
            {
                Log.SendFailed(_logger, attempt, ex.Message);
                _metrics?.Error("publish_failed");
                if (!_connection.IsConnected)
                {
                    continue; // the link is down, not the exchange: wait for it
                }

                _ladder.Failure();
                await DelayAsync(MqttConnection.Backoff(attempt, _options.ReconnectMaxDelay), ct).ConfigureAwait(false);
                continue;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                continue; // the link dropped, or the verifier went offline, under the request: replay it (elsewhere)
            }
            finally
            {
                lock (_lock)
                {
                    _attempt = null;
                }
            }

            if (ReferenceEquals(answer, Quiet))
            {
                // Not a link verdict: a dead verifier looks the same. Publish timeouts (no PUBACK from the broker) are
                // what declare the link dead; the directory's last wills, or a verifier silent while the link is up,
                // declare a verifier dead.
                onQuiet(attempt);
                await IdleAsync().ConfigureAwait(false);
                _metrics?.Error("timeout");
                _ladder.Failure();
                if (_connection.IsConnected && ++_silentTimeouts >= _options.SilentVerifierTimeouts && LeaveSilent())
                {
                    return null;
                }

                continue;
            }

            _silentTimeouts = 0;
            _lastProgress = _time.GetTimestamp();
            return answer.Message;
        }
    }

    /// <summary>Before each send: waits for the link, checks the give-up time and counts a retry. Returns the attempt's
    /// cancellation (a lost link cancels it), or null when the session moved to another verifier (the caller reopens there).</summary>
    private async Task<CancellationTokenSource?> BeginAttemptAsync(int attempt, CancellationToken ct)
    {
        if (!_connection.IsConnected)
        {
            await WaitForLinkAsync(ct).ConfigureAwait(false);
        }

        if (await MovedAsync(ct).ConfigureAwait(false))
        {
            return null;
        }

        CheckGiveUp();
        if (attempt > 1)
        {
            _faults.Retry();
        }

        var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        lock (_lock)
        {
            _attempt = cts;
        }

        return cts;
    }

    /// <summary>A round was committed: climb the ladder, note recovery after a reconnect, save the session.</summary>
    public void Committed(SessionStore? store, string fingerprint)
    {
        _ladder.Success();
        if (Interlocked.Exchange(ref _reconnectedAt, 0) is var since and not 0)
        {
            _faults.Recovered(_time.GetElapsedTime(since));
        }

        if (_faults.FailoverStartedAt is { } failover)
        {
            _faults.FailedOver(_time.GetElapsedTime(failover));
        }

        store?.Save(_session.Snapshot(), fingerprint);
    }

    private async Task WaitForLinkAsync(CancellationToken ct)
    {
        _ladder.LinkDown();
        var shown = _session.DraftOnly(_options.OfflineDraftTokens);
        if (shown.Length > 0)
        {
            _faults.Unverified(shown.Length);
            foreach (var t in shown)
            {
                _onUnverified?.Invoke(t, false);
            }

            _onUnverified?.Invoke(-1, true); // the unverified stretch ends here; verified text takes over
        }

        while (!_connection.IsConnected)
        {
            CheckGiveUp();
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(1));
            try
            {
                await _connection.WaitConnectedAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
            }
        }

        _ladder.LinkUp();
    }

    /// <summary>True when the current verifier is offline and another live one takes the session.</summary>
    private async Task<bool> MovedAsync(CancellationToken ct)
    {
        if (_options.VerifierId is not null)
        {
            return false;
        }

        // A session stays on the verifier that holds its cache while that verifier is online: a verifier that joins
        // takes new sessions (the hash picks it), never live ones.
        if (Verifier.Length > 0 && _directory.IsOnline(Verifier))
        {
            return false;
        }

        var pick = _directory.Pick(PlacementKey, _refused);
        var waited = false;
        while (pick is null)
        {
            waited = true;
            CheckGiveUp();
            _faults.StartFailover(_lastProgress);
            pick = await _directory.WaitForAsync(PlacementKey, TimeSpan.FromSeconds(1), _time, ct, _refused).ConfigureAwait(false);
            if (pick is not null && Verifier.Length > 0 && _directory.IsOnline(Verifier))
            {
                pick = Verifier; // its own verifier is back (a flap): no move
            }
        }

        if (pick == Verifier)
        {
            if (waited)
            {
                _faults.CancelFailover(); // none was online for a while, and the same one came back: no move
            }

            return false;
        }

        Log.FailingOver(_logger, _session.Settings.SessionId, Verifier, pick);
        _faults.StartFailover(_lastProgress);
        Verifier = pick;
        _session.ResetVerifier();
        return true;
    }

    private void CheckGiveUp()
    {
        var quiet = _time.GetElapsedTime(_lastProgress);
        if (quiet > _options.GiveUpAfter)
        {
            throw new GenerationException($"no reply from any verifier for {quiet.TotalSeconds:0} s (link {(_connection.IsConnected ? "up" : "down")}, verifier {Verifier}); giving up");
        }
    }

    private async Task DelayAsync(TimeSpan delay, CancellationToken ct) => await Task.Delay(delay, _time, ct).ConfigureAwait(false);

    public void Dispose()
    {
        _connection.Disconnected -= OnDisconnected;
        _connection.Connected -= OnConnected;
        _directory.WentOffline -= OnVerifierOffline;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 301, Level = LogLevel.Warning, Message = "No reply within {TimeoutMs} ms (attempt {Attempt}); resending")]
        public static partial void Timeout(ILogger logger, int attempt, double timeoutMs);

        [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "Send attempt {Attempt} failed: {Reason}")]
        public static partial void SendFailed(ILogger logger, int attempt, string reason);

        [LoggerMessage(EventId = 305, Level = LogLevel.Warning, Message = "Session {SessionId} fails over from verifier {From} to {To}")]
        public static partial void FailingOver(ILogger logger, string sessionId, string from, string to);

        [LoggerMessage(EventId = 319, Level = LogLevel.Warning, Message = "Session {SessionId} leaves verifier {From}, silent for {Timeouts} requests with the link up though its status says online; moving to {To}")]
        public static partial void Silent(ILogger logger, string sessionId, string from, int timeouts, string to);

        [LoggerMessage(EventId = 320, Level = LogLevel.Information, Message = "Session id {SessionId} was used before on verifier {Verifier} (up to epoch {Epoch}); reopening above it")]
        public static partial void Superseded(ILogger logger, string sessionId, string verifier, int epoch);

        [LoggerMessage(EventId = 318, Level = LogLevel.Information, Message = "Verifier {From} refused session {SessionId} ({Reason}); opening it on {To}")]
        public static partial void Refused(ILogger logger, string sessionId, string from, string to, string reason);
    }
}

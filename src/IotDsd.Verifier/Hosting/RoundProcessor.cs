using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Limits;
using IotDsd.Verifier.Sessions;
using Microsoft.Extensions.Logging;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// Handles one batch of inbound requests: checks each against its session, runs every verifiable round through one
/// batched forward pass, and publishes all replies concurrently. Bad input is refused with a reply where the sender
/// can be identified, otherwise logged and counted; it never stops the loop or affects other sessions.
/// </summary>
internal sealed partial class RoundProcessor(
    VerifierOptions options,
    ILanguageModel target,
    SessionTable sessions,
    MqttConnection connection,
    VerifierStats stats,
    ErrorCounters errors,
    LimitGuard limits,
    ILogger logger,
    TimeProvider time)
{
    /// <summary>Passes run in one call for deferred rounds beyond the first (each takes at least one round per session).</summary>
    private const int MaxExtraPasses = 8;

    private readonly List<InboundMessage> _deferred = [];
    private readonly HeldRounds _held = new();
    private readonly PassCost _passCost = new();
    private readonly StreamedRounds _streams = new(sessions, connection, logger, time);

    /// <summary>True while streamed rounds are decoding: the loop must run passes without waiting for requests.</summary>
    public bool Streaming => _streams.Any;

    /// <summary>Measures the target's pass cost before the first request, so the line exists from the first open (<see cref="PassCost.Measure"/>).</summary>
    public void Calibrate() => _passCost.Measure(target);

    public async Task ProcessAsync(List<InboundMessage> batch, CancellationToken ct)
    {
        await PassAsync(batch, ct).ConfigureAwait(false);

        // Rounds deferred behind their session's round in that pass (a pipelined round, or a conditional one released
        // because the round it follows is now verified) go at once, not when the next request happens to arrive.
        for (var passes = 0; _deferred.Count > 0 && passes < MaxExtraPasses && !ct.IsCancellationRequested; passes++)
        {
            await PassAsync([], ct).ConfigureAwait(false);
        }
    }

    private async Task PassAsync(List<InboundMessage> batch, CancellationToken ct)
    {
        sessions.Budget?.BeginPass(sessions);
        var replies = new List<Task>(batch.Count);
        var work = new List<(InboundMessage Message, string Device, VerifierSession Session, DraftRound Round)>();
        var inBatch = new HashSet<VerifierSession>();
        var pending = new List<InboundMessage>(_deferred);
        _deferred.Clear();
        pending.AddRange(batch);
        foreach (var message in pending)
        {
            var device = TopicScheme.DeviceFromRoundsTopic(message.Topic, options.VerifierId);
            if (device is null)
            {
                Refuse(null, message, ErrorCode.WrongTopic, $"'{message.Topic}' is not a rounds topic of verifier {options.VerifierId}", replies, ct);
                continue;
            }

            if (limits.Admit(device) is { } slow)
            {
                RefuseLimit(device, message, slow, replies, ct);
                continue;
            }

            if (!message.Decoded.Ok)
            {
                limits.ObserveDecode(message.Decoded.Error);
                Refuse(device, message, message.Decoded.Error!.Value, message.Decoded.Reason ?? "undecodable", replies, ct);
                continue;
            }

            if (message.ResponseTopic is not null && message.ResponseTopic != TopicScheme.DeviceReplies(device))
            {
                Refuse(device, message, ErrorCode.WrongTopic, $"response topic must be {TopicScheme.DeviceReplies(device)}", replies, ct);
                continue;
            }

            try
            {
                switch (message.Decoded.Message)
                {
                    case OpenSession or CloseSession when sessions.Find(device, SessionOf(message.Decoded.Message!)) is { } busy && inBatch.Contains(busy):
                        _deferred.Add(message); // never replace or drop a session whose round is in this pass: after it
                        break;
                    case OpenSession open:
                        HandleOpen(device, message, open, replies, ct);
                        break;
                    case DraftRound round:
                        var session = sessions.Find(device, round.SessionId);
                        if (session is null)
                        {
                            var why = sessions.WasExpired(device, round.SessionId)
                                ? $"session '{round.SessionId}' expired here after more than {options.SessionIdleTimeout.TotalSeconds:0} s idle; reopen it and resend the prefix"
                                : $"session '{round.SessionId}' is not open here; open it and resend the prefix";
                            Refuse(device, message, ErrorCode.UnknownSession, why, replies, ct, round.SessionId, round.Round);
                            break;
                        }

                        if (inBatch.Contains(session))
                        {
                            _deferred.Add(message); // a second round for a session already in this pass: after it
                            break;
                        }

                        session.LastUsedTicks = time.GetTimestamp();
                        var check = session.Check(round);
                        if (check.Kind == RoundCheckKind.Hold)
                        {
                            _held.Hold(device, session, round, message, stats);
                            break;
                        }

                        if (check.Kind == RoundCheckKind.Stale && round.Epoch == session.Epoch)
                        {
                            // Behind the session within its own epoch: a late duplicate, whose sender has moved on and
                            // drops any answer to it, or a device that restarted without its state under the same
                            // session id and is redoing rounds this session already did: it waits for an answer, and
                            // silence would hold it until it gives up. Telling it to reopen is harmless to the first and
                            // the way on for the second (it reopens above this epoch and resends its prefix).
                            stats.Duplicate();
                            Refuse(device, message, ErrorCode.PrefixMismatch, $"round {round.Round} is behind session '{round.SessionId}' here (epoch {session.Epoch}); reopen it and resend the prefix", replies, ct, round.SessionId, round.Round);
                            break;
                        }

                        if (check.Kind == RoundCheckKind.Resume)
                        {
                            stats.Duplicate();
                            _streams.Resume(device, session, check.StreamFrom, message, replies, ct);
                            break;
                        }

                        if (check.Kind == RoundCheckKind.Ok && limits.CheckRound(device, session, round) is { } tooMuch)
                        {
                            RefuseLimit(device, message, tooMuch, replies, ct, round.SessionId, round.Round);
                            break;
                        }

                        if (check.Kind == RoundCheckKind.Ok && sessions.Budget?.AdmitRound(sessions, session, (long)round.CommittedLength + Math.Max(round.Draft.Length, round.Stream), time.GetTimestamp()) is { } full)
                        {
                            Refuse(device, message, ErrorCode.Overloaded, full, replies, ct, round.SessionId, round.Round);
                            break;
                        }

                        if (Answer(device, message, check, round.SessionId, round.Round, replies, ct))
                        {
                            inBatch.Add(session);
                            if (round.Stream > 0)
                            {
                                _streams.Start(device, session, round, message); // decoded from this pass on
                            }
                            else
                            {
                                work.Add((message, device, session, round));
                            }
                        }

                        break;
                    case MoreProposals more:
                        var s = sessions.Find(device, more.SessionId);
                        if (s is null)
                        {
                            Refuse(device, message, ErrorCode.UnknownSession, $"session '{more.SessionId}' is not open here", replies, ct, more.SessionId, more.Round);
                            break;
                        }

                        s.LastUsedTicks = time.GetTimestamp();
                        Answer(device, message, s.MoreProposals(more), more.SessionId, more.Round, replies, ct);
                        break;
                    case CloseSession close:
                        // A late duplicate close from an older epoch must not drop the session the device reopened.
                        if (sessions.Find(device, close.SessionId) is { } closing && close.Epoch >= closing.Epoch)
                        {
                            sessions.Remove(device, close.SessionId);
                        }

                        break;
                    default:
                        Refuse(device, message, ErrorCode.UnexpectedMessage, $"{message.Decoded.Message!.GetType().Name} is not a request a verifier takes", replies, ct);
                        break;
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.RequestFailed(logger, ex, device);
                Refuse(device, message, ErrorCode.Internal, "the verifier failed on this request", replies, ct);
            }
        }

        if (work.Count > 0 || _streams.Any)
        {
            Verify(work, replies, ct);
        }

        _held.Release(sessions, _deferred);
        await Task.WhenAll(replies).ConfigureAwait(false);
    }

    private static string SessionOf(object message) => message switch
    {
        OpenSession o => o.SessionId,
        CloseSession c => c.SessionId,
        _ => "",
    };

    private void HandleOpen(string device, InboundMessage message, OpenSession asked, List<Task> replies, CancellationToken ct)
    {
        var open = limits.Granted(asked);
        string? problem = null;
        if (open.DeviceId != device)
        {
            problem = $"device id '{open.DeviceId}' does not match the topic's device '{device}'";
        }
        else if (!TopicScheme.IsValidId(open.SessionId))
        {
            problem = "session id must be 1-64 characters of A-Z a-z 0-9 _ . -";
        }
        else if (VocabularyCheck.Compare(open.VocabSize, open.VocabularyDigest, target.VocabSize, VocabularyCheck.DigestOf(target)) is { } vocabulary)
        {
            problem = vocabulary;
        }
        else if (!Enum.IsDefined(open.Mode))
        {
            problem = $"unknown mode {(int)open.Mode}";
        }
        else if (open.MaxGamma is < 1 or > 64)
        {
            problem = $"max gamma must be between 1 and 64, got {open.MaxGamma}";
        }
        else if (open.StopTokens is { } stops && (stops.Length > SessionSettings.MaxStopTokens || stops.Any(t => (uint)t >= (uint)target.VocabSize)))
        {
            problem = $"at most {SessionSettings.MaxStopTokens} end-of-sequence ids, each inside the vocabulary of {target.VocabSize}";
        }
        else if (SamplingParams.From(open.Sampling).Validate() is { } bad)
        {
            problem = bad;
        }
        else if (open.Mode == DecodingMode.Greedy && open.Sampling.Temperature > 0)
        {
            problem = "greedy mode needs temperature 0";
        }

        if (problem is not null)
        {
            var code = open.DeviceId != device ? ErrorCode.WrongTopic : ErrorCode.InvalidRequest;
            Refuse(device, message, code, problem, replies, ct, open.SessionId);
            return;
        }

        if (limits.CheckOpen(device, open) is { } tooMuch)
        {
            RefuseLimit(device, message, tooMuch, replies, ct, open.SessionId);
            return;
        }

        var existing = sessions.Find(device, open.SessionId);
        var superseded = existing is not null
            ? open.Epoch < existing.Epoch ? existing.Epoch : (int?)null
            : sessions.EndedEpoch(device, open.SessionId) is { } ended && open.Epoch <= ended ? ended : null;
        if (superseded is { } held)
        {
            // A late duplicate (nobody waits for the answer), or a device reusing the session id from epoch 1 after a
            // new start: tell it the epoch to reopen above. Never let an old open bring back a session that has ended.
            Log.StaleOpen(logger, device, open.SessionId, open.Epoch, held);
            errors.Increment(ErrorCode.EpochSuperseded);
            if (limits.AllowErrorReply(device))
            {
                Reply(device, message, new ErrorReply
                {
                    Code = ErrorCode.EpochSuperseded,
                    Message = $"session '{open.SessionId}' is at epoch {held} here; reopen it with a higher epoch",
                    SessionId = open.SessionId,
                    Epoch = held,
                }, replies, ct);
            }

            return;
        }

        if (existing is null || open.Epoch > existing.Epoch)
        {
            if (existing is null && sessions.Count >= options.MaxSessions)
            {
                Refuse(device, message, ErrorCode.Overloaded, $"verifier holds its maximum of {options.MaxSessions} sessions", replies, ct, open.SessionId);
                return;
            }

            if (existing is null && sessions.Budget?.AdmitOpen(sessions, open.MaxTokens, open.MaxGamma, time.GetTimestamp()) is { } full)
            {
                Refuse(device, message, ErrorCode.Overloaded, full, replies, ct, open.SessionId);
                return;
            }

            var session = new VerifierSession(target, open, device) { LastUsedTicks = time.GetTimestamp() };
            sessions.Put(device, session);
            limits.Opened(device, session);
        }

        var (fixedMs, perTokenMs) = _passCost.Line;
        Reply(device, message, new SessionOpened
        {
            SessionId = open.SessionId, Epoch = open.Epoch, VerifierId = options.VerifierId, TargetModel = target.Name,
            MaxTreeNodes = Core.Speculative.TreeVerifier.OffersTrees(open.Mode) ? open.MaxTreeNodes : 0, ConditionalRounds = true,
            Sessions = sessions.Count, PassFixedMs = fixedMs, PassPerTokenMs = perTokenMs,
        }, replies, ct);
    }

    /// <summary>Replies for a check that is not "verify"; returns true when the round should be verified.</summary>
    private bool Answer(string device, InboundMessage message, RoundCheck check, string sessionId, long round, List<Task> replies, CancellationToken ct)
    {
        switch (check.Kind)
        {
            case RoundCheckKind.Ok:
                return true;
            case RoundCheckKind.Reply:
                stats.Duplicate();
                Reply(device, message, check.Verdict!, replies, ct);
                return false;
            case RoundCheckKind.Stale:
                stats.Duplicate();
                return false;
            default:
                Refuse(device, message, check.Code, check.Reason ?? "refused", replies, ct, sessionId, round);
                return false;
        }
    }

    private void Verify(List<(InboundMessage Message, string Device, VerifierSession Session, DraftRound Round)> work, List<Task> replies, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var streamed = _streams.Take(Math.Max(1, options.MaxBatch - work.Count));
        var requests = new FeedRequest[work.Count + streamed.Count];
        for (var i = 0; i < work.Count; i++)
        {
            requests[i] = work[i].Session.BeginFeed(work[i].Round);
        }

        for (var i = 0; i < streamed.Count; i++)
        {
            requests[work.Count + i] = StreamedRounds.Begin(streamed[i]);
        }

        try
        {
            TokenTree.FeedBatch(target, requests);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The caches of these sessions are now unknown: drop them so their devices re-open with the prefix.
            Log.ForwardFailed(logger, ex, work.Count);
            foreach (var w in work)
            {
                sessions.Remove(w.Device, w.Session.Open.SessionId);
                Refuse(w.Device, w.Message, ErrorCode.UnknownSession, "the verifier lost this session's cache; reopen it", replies, ct, w.Round.SessionId, w.Round.Round);
            }

            _streams.Fail(streamed);
            foreach (var s in streamed)
            {
                sessions.Remove(s.Device, s.Session.Open.SessionId);
                Refuse(s.Device, s.Request, ErrorCode.UnknownSession, "the verifier lost this session's cache; reopen it", replies, ct, s.Session.Open.SessionId, s.Stream.Round);
            }

            return;
        }

        var micros = (int)Math.Min(int.MaxValue, Stopwatch.GetElapsedTime(started).Ticks / 10);
        var depth = connection.Inbound.CanCount ? connection.Inbound.Count : 0;
        var passTokens = requests.Sum(r => r.Tokens.Length);
        _passCost.Add(passTokens, micros / 1000.0);
        var (fixedMs, perTokenMs) = _passCost.Line;
        stats.Batch(requests.Length);
        _streams.Complete(streamed, requests.Length, (fixedMs, perTokenMs), ct);
        for (var i = 0; i < work.Count; i++)
        {
            var (message, device, session, round) = work[i];
            var verdict = session.Complete(round, requests[i].Logits.Span, requests.Length, depth, micros) with { PassTokens = passTokens, PassFixedMs = fixedMs, PassPerTokenMs = perTokenMs };
            stats.Verified(round.Draft.Length, verdict.Accepted);
            Reply(device, message, verdict, replies, ct);
        }
    }

    private void Reply(string device, InboundMessage message, object reply, List<Task> replies, CancellationToken ct) =>
        replies.Add(PublishAsync(message.ResponseTopic ?? TopicScheme.DeviceReplies(device), reply, message.CorrelationData, ct));

    private void Refuse(string? device, InboundMessage message, ErrorCode code, string reason, List<Task> replies, CancellationToken ct, string? sessionId = null, long round = 0)
    {
        errors.Increment(code);
        if (!limits.AllowErrorReply(device ?? ""))
        {
            return; // counted only: a flood of bad requests gets no reply and no log line each
        }

        Log.Refused(logger, device ?? "?", code, reason);
        if (device is not null)
        {
            // Only ever to the device's own reply topic: a request cannot aim the verifier at another device.
            replies.Add(PublishAsync(TopicScheme.DeviceReplies(device), new ErrorReply { Code = code, Message = reason, SessionId = sessionId, Round = round }, message.CorrelationData, ct));
        }
    }

    private void RefuseLimit(string device, InboundMessage message, LimitRefusal refusal, List<Task> replies, CancellationToken ct, string? sessionId = null, long round = 0) =>
        Refuse(device, message, refusal.Code, refusal.Message, replies, ct, sessionId, round);

    private async Task PublishAsync(string topic, object reply, byte[]? correlation, CancellationToken ct)
    {
        try
        {
            await connection.PublishAsync(topic, reply, null, correlation, ct).ConfigureAwait(false);
        }
        catch (MqttPublishException ex)
        {
            // The device retries its request; the verdict is cached, so the retry gets the same answer.
            Log.ReplyFailed(logger, topic, ex.Message);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "Refused a request from device {Device}: {Code}: {Reason}")]
        public static partial void Refused(ILogger logger, string device, ErrorCode code, string reason);

        [LoggerMessage(EventId = 211, Level = LogLevel.Error, Message = "Forward pass over {Count} rounds failed; their sessions were dropped")]
        public static partial void ForwardFailed(ILogger logger, Exception ex, int count);

        [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "Could not publish a reply on {Topic}: {Reason}")]
        public static partial void ReplyFailed(ILogger logger, string topic, string reason);

        [LoggerMessage(EventId = 213, Level = LogLevel.Error, Message = "Request from device {Device} failed")]
        public static partial void RequestFailed(ILogger logger, Exception ex, string device);

        [LoggerMessage(EventId = 214, Level = LogLevel.Debug, Message = "Open of session {SessionId} from {Device} at epoch {Epoch}: superseded, the session is at epoch {Current} here")]
        public static partial void StaleOpen(ILogger logger, string device, string sessionId, int epoch, int current);
    }
}

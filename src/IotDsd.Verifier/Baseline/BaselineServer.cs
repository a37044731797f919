using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Verifier.Baseline;

/// <summary>
/// The server-only baseline: what a fleet runs without IotDsd. Each device sends its prompt once; the server
/// generates every token itself with the target model — all active sessions advance one token per batched forward
/// pass (continuous batching, the same runner and batch bound as the verifier) — and streams each token down on the
/// device's reply topic. Sampling uses the same derived randomness as <c>generate</c>, so its text equals the
/// reference exactly.
/// </summary>
public sealed partial class BaselineServer : BackgroundService
{
    private readonly VerifierOptions _options;
    private readonly ILanguageModel _target;
    private readonly ILogger<BaselineServer> _logger;
    private readonly TimeProvider _time;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<StreamSession> _active = [];
    private readonly Dictionary<(string Device, string Session), StreamSession> _byKey = [];
    private int _nextStart;

    /// <summary>Forward passes whose tokens may still be awaiting their acknowledgements.</summary>
    private const int PipelineDepth = 4;

    public BaselineServer(VerifierOptions options, ILanguageModel target, ILogger<BaselineServer> logger, TimeProvider? time = null)
    {
        if (options.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(options));
        }

        _options = options;
        _target = target;
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Batches (forward passes) and the sessions they held, for load figures.</summary>
    public VerifierStats Stats { get; } = new();

    /// <summary>Refusals by reason.</summary>
    public ErrorCounters Errors { get; } = new();

    /// <summary>Completes once connected and subscribed.</summary>
    public Task Ready => _ready.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = _options.Mqtt($"iotdsd-server-{_options.VerifierId}");
        var prefix = $"{TopicScheme.Root}/servers/{_options.VerifierId}/streams/";
        await using var connection = new MqttConnection(settings, t => t.StartsWith(prefix, StringComparison.Ordinal), _logger, _time);
        try
        {
            await connection.ConnectAsync([TopicScheme.ServerStreamsFilter(_options.VerifierId)], stoppingToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _ready.TrySetException(ex);
            throw;
        }

        _ready.TrySetResult();
        Log.Started(_logger, _options.VerifierId, _options.Broker.ToString(), _target.Name);
        // The tokens of a pass are published while the next passes compute; the loop waits for acknowledgements
        // only when PipelineDepth passes are in flight, so the server is never idle on a round trip per token.
        var inFlight = new Queue<Task>();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var publishes = new List<Task>();
                if (_active.Count == 0)
                {
                    while (inFlight.Count > 0)
                    {
                        await inFlight.Dequeue().ConfigureAwait(false);
                    }

                    Admit(connection, await connection.Inbound.ReadAsync(stoppingToken).ConfigureAwait(false), publishes, stoppingToken);
                }

                while (connection.Inbound.TryRead(out var more))
                {
                    Admit(connection, more, publishes, stoppingToken);
                }

                if (_active.Count > 0)
                {
                    Step(connection, publishes, stoppingToken);
                }

                inFlight.Enqueue(Task.WhenAll(publishes));
                if (inFlight.Count > PipelineDepth)
                {
                    await inFlight.Dequeue().ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var s in _active)
            {
                s.Dispose();
            }
        }
    }

    private void Admit(MqttConnection connection, InboundMessage message, List<Task> publishes, CancellationToken ct)
    {
        var device = TopicScheme.DeviceFromStreamsTopic(message.Topic, _options.VerifierId);
        if (device is null)
        {
            Errors.Increment(ErrorCode.WrongTopic);
            Log.Refused(_logger, "?", ErrorCode.WrongTopic, $"'{message.Topic}' is not a streams topic of server {_options.VerifierId}");
            return;
        }

        string? problem;
        var code = ErrorCode.InvalidRequest;
        if (!message.Decoded.Ok)
        {
            problem = message.Decoded.Reason ?? "undecodable";
            code = message.Decoded.Error!.Value;
        }
        else if (message.Decoded.Message is not StreamRequest request)
        {
            problem = $"{message.Decoded.Message!.GetType().Name} is not a request a baseline server takes";
            code = ErrorCode.UnexpectedMessage;
        }
        else
        {
            problem = Check(device, request);
            if (problem is null)
            {
                if (_byKey.ContainsKey((device, request.SessionId)))
                {
                    return; // a duplicate delivery of a request already streaming
                }

                if (_active.Count >= _options.MaxSessions)
                {
                    Refuse(connection, device, message, ErrorCode.Overloaded, $"server holds its maximum of {_options.MaxSessions} streams", request.SessionId, publishes, ct);
                    return;
                }

                var session = new StreamSession(_target, device, request, message.CorrelationData);
                _active.Add(session);
                _byKey[(device, request.SessionId)] = session;
                return;
            }

            code = request.DeviceId != device ? ErrorCode.WrongTopic : ErrorCode.InvalidRequest;
        }

        Refuse(connection, device, message, code, problem, (message.Decoded.Message as StreamRequest)?.SessionId, publishes, ct);
    }

    private string? Check(string device, StreamRequest request)
    {
        if (request.DeviceId != device)
        {
            return $"device id '{request.DeviceId}' does not match the topic's device '{device}'";
        }

        if (!TopicScheme.IsValidId(request.SessionId))
        {
            return "session id must be 1-64 characters of A-Z a-z 0-9 _ . -";
        }

        if (request.Prompt.Length is < 1 or > 65_536)
        {
            return $"the prompt must hold 1 to 65536 tokens, got {request.Prompt.Length}";
        }

        foreach (var t in request.Prompt)
        {
            if ((uint)t >= (uint)_target.VocabSize)
            {
                return $"prompt token {t} is outside the vocabulary of {_target.VocabSize}";
            }
        }

        if (request.MaxTokens is < 1 or > 1_000_000)
        {
            return $"max tokens must be between 1 and 1000000, got {request.MaxTokens}";
        }

        return SamplingParams.From(request.Sampling).Validate();
    }

    /// <summary>One forward pass: up to MaxBatch active sessions each get their next token.</summary>
    private void Step(MqttConnection connection, List<Task> publishes, CancellationToken ct)
    {
        var count = Math.Min(_active.Count, _options.MaxBatch);
        var batch = new StreamSession[count];
        var requests = new FeedRequest[count];
        for (var i = 0; i < count; i++)
        {
            batch[i] = _active[(_nextStart + i) % _active.Count];
            requests[i] = batch[i].BeginFeed();
        }

        _nextStart = _active.Count == 0 ? 0 : (_nextStart + count) % _active.Count;
        try
        {
            _target.FeedBatch(requests);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.ForwardFailed(_logger, ex, count);
            foreach (var s in batch)
            {
                Refuse(connection, s.Device, null, ErrorCode.Internal, "the server failed on this stream", s.Request.SessionId, publishes, ct, s.Correlation);
                Retire(s);
            }

            return;
        }

        Stats.Batch(count);
        foreach (var s in batch)
        {
            var (index, token, done) = s.Next();
            var chunk = new TokenChunk { SessionId = s.Request.SessionId, Index = index, Tokens = [token], Done = done, BatchSize = count };
            publishes.Add(PublishAsync(connection, TopicScheme.DeviceReplies(s.Device), chunk, s.Correlation, ct));
            if (done)
            {
                Retire(s);
            }
        }
    }

    private void Retire(StreamSession s)
    {
        _active.Remove(s);
        _byKey.Remove((s.Device, s.Request.SessionId));
        s.Dispose();
    }

    private void Refuse(MqttConnection connection, string device, InboundMessage? message, ErrorCode code, string reason, string? sessionId, List<Task> publishes, CancellationToken ct, byte[]? correlation = null)
    {
        Errors.Increment(code);
        Log.Refused(_logger, device, code, reason);
        var error = new ErrorReply { Code = code, Message = reason, SessionId = sessionId };
        publishes.Add(PublishAsync(connection, TopicScheme.DeviceReplies(device), error, correlation ?? message?.CorrelationData, ct));
    }

    private async Task PublishAsync(MqttConnection connection, string topic, object message, byte[]? correlation, CancellationToken ct)
    {
        try
        {
            await connection.PublishAsync(topic, message, null, correlation, ct).ConfigureAwait(false);
        }
        catch (MqttPublishException ex)
        {
            Log.PublishFailed(_logger, topic, ex.Message);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        foreach (var s in _active)
        {
            s.Dispose();
        }

        _active.Clear();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 260, Level = LogLevel.Information, Message = "Baseline server {ServerId} serving on {Broker} with target {Model}")]
        public static partial void Started(ILogger logger, string serverId, string broker, string model);

        [LoggerMessage(EventId = 261, Level = LogLevel.Warning, Message = "Refused a stream request from device {Device}: {Code}: {Reason}")]
        public static partial void Refused(ILogger logger, string device, ErrorCode code, string reason);

        [LoggerMessage(EventId = 262, Level = LogLevel.Error, Message = "Forward pass over {Count} streams failed; they were ended")]
        public static partial void ForwardFailed(ILogger logger, Exception ex, int count);

        [LoggerMessage(EventId = 263, Level = LogLevel.Warning, Message = "Could not publish on {Topic}: {Reason}")]
        public static partial void PublishFailed(ILogger logger, string topic, string reason);
    }
}

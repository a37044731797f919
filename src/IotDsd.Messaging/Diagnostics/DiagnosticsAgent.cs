using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>Where and how often a role publishes its diagnostics.</summary>
public sealed record DiagnosticsSettings
{
    public required BrokerAddress Broker { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }

    /// <summary>TLS to the broker; null for plain TCP.</summary>
    public MqttTlsSettings? Tls { get; init; }

    /// <summary>Period of the retained metrics publish.</summary>
    public TimeSpan MetricsInterval { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// Field diagnostics of one device or verifier over MQTT: publishes retained metrics every interval and answers
/// diagnostic commands (<c>ping</c>, <c>config</c>, <c>rebirth</c>) sent to its <c>cmd</c> topic as MQTT 5
/// request/reply. It has its own small connection, so that diagnostics neither queue behind rounds nor go away when
/// the role's connection is wedged.
/// </summary>
public sealed partial class DiagnosticsAgent(DiagnosticsSettings settings, IDiagnosticsSource source, ILogger<DiagnosticsAgent> logger, TimeProvider time)
    : BackgroundService
{
    private readonly long _started = time.GetTimestamp();
    private long _lastTick = time.GetTimestamp();
    private long _lastPublished;
    private long _published;
    private long _publishFailures;
    private long _commands;

    /// <summary>Timestamp of the agent loop's latest pass: proof that timers and the thread pool still run.</summary>
    public long LastTick => Interlocked.Read(ref _lastTick);

    /// <summary>Timestamp of the latest successful metrics publish, 0 before the first.</summary>
    public long LastPublished => Interlocked.Read(ref _lastPublished);

    public long Published => Interlocked.Read(ref _published);
    public long PublishFailures => Interlocked.Read(ref _publishFailures);
    public long CommandsAnswered => Interlocked.Read(ref _commands);

    public TimeSpan Interval => settings.MetricsInterval;

    private string MetricsTopic => source.Role == "verifier" ? TopicScheme.VerifierMetrics(source.Id) : TopicScheme.DeviceMetrics(source.Id);

    private string CommandTopic => source.Role == "verifier" ? TopicScheme.VerifierCommands(source.Id) : TopicScheme.DeviceCommands(source.Id);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var attempt = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            var connection = new MqttConnection(
                new MqttSettings
                {
                    Broker = settings.Broker,
                    ClientId = $"iotdsd-{source.Role}-{source.Id}-diag",
                    Username = settings.Username,
                    Password = settings.Password,
                    Tls = settings.Tls,
                    BufferBytes = 64 * 1024,
                    MaxPayloadBytes = 64 * 1024,
                    InboundQueue = 64,
                },
                _ => false,
                logger,
                time);
            await using (connection.ConfigureAwait(false))
            {
                try
                {
                    await connection.ConnectAsync([CommandTopic], stoppingToken).ConfigureAwait(false);
                }
                catch (MqttConnectionException ex)
                {
                    // The connection's own supervisor takes over after a first success; until then, retry here.
                    Interlocked.Exchange(ref _lastTick, time.GetTimestamp());
                    Log.ConnectFailed(logger, ++attempt, ex.Message);
                    await Task.Delay(MqttConnection.Backoff(attempt), time, stoppingToken).ConfigureAwait(false);
                    continue;
                }

                var commands = Task.Run(() => AnswerAsync(connection, stoppingToken), CancellationToken.None);
                try
                {
                    await PublishLoopAsync(connection, stoppingToken).ConfigureAwait(false);
                }
                finally
                {
                    await commands.ConfigureAwait(false);
                }

                return;
            }
        }
    }

    private async Task PublishLoopAsync(MqttConnection connection, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(settings.MetricsInterval, time);
        try
        {
            do
            {
                Interlocked.Exchange(ref _lastTick, time.GetTimestamp());
                await PublishMetricsAsync(connection, ct).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Publishes one retained metrics snapshot; failures are counted, never fatal. A refusal by the broker is
    /// logged at Warning by the connection (once per topic); other failures (a link going down) at Debug here.</summary>
    private async Task PublishMetricsAsync(MqttConnection connection, CancellationToken ct)
    {
        try
        {
            // The role's connection counts its own refusals; this connection's (metrics, replies) are added here.
            var snapshot = source.Snapshot().WithPublishRefusals(connection.PublishesRefused);
            await connection.PublishRawAsync(MetricsTopic, snapshot.ToJson(), retain: true, ct).ConfigureAwait(false);
            Interlocked.Increment(ref _published);
            Interlocked.Exchange(ref _lastPublished, time.GetTimestamp());
        }
        catch (MqttPublishException ex)
        {
            Interlocked.Increment(ref _publishFailures);
            Log.PublishFailed(logger, ex.Message);
        }
    }

    private async Task AnswerAsync(MqttConnection connection, CancellationToken ct)
    {
        try
        {
            await foreach (var message in connection.Inbound.ReadAllAsync(ct).ConfigureAwait(false))
            {
                if (message.Topic != CommandTopic)
                {
                    continue;
                }

                // Replies go only to diagnostic reply topics, so a forged command cannot make this role publish elsewhere.
                var replyTo = message.ResponseTopic;
                if (replyTo is null || !replyTo.StartsWith(TopicScheme.Root + "/diag/", StringComparison.Ordinal)
                    || replyTo.AsSpan().IndexOfAny('+', '#') >= 0)
                {
                    Log.Unanswerable(logger, replyTo ?? "(none)");
                    continue;
                }

                var reply = await HandleAsync(DiagnosticRequest.TryParse(message.Raw), connection, ct).ConfigureAwait(false);
                try
                {
                    await connection.PublishRawAsync(replyTo, reply.ToJson(), null, message.CorrelationData, ct).ConfigureAwait(false);
                    Interlocked.Increment(ref _commands);
                }
                catch (MqttPublishException ex)
                {
                    Log.PublishFailed(logger, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task<DiagnosticReply> HandleAsync(DiagnosticRequest? request, MqttConnection connection, CancellationToken ct)
    {
        var snapshot = source.Snapshot().WithPublishRefusals(connection.PublishesRefused);
        var reply = new DiagnosticReply
        {
            Ok = true,
            Command = request?.Command ?? "",
            Role = source.Role,
            Id = source.Id,
            UptimeSeconds = Math.Round(time.GetElapsedTime(_started).TotalSeconds, 1),
            Connected = snapshot.Connected,
            Connections = snapshot.Connections,
            PublishRefused = snapshot.Errors.GetValueOrDefault(MetricsPayload.PublishRefusedKey),
        };
        switch (request?.Command)
        {
            case "ping":
                return reply;
            case "config":
                return reply with { Config = [.. source.EffectiveConfiguration().Select(e => e.Redact())] };
            case "rebirth":
                try
                {
                    await source.RepublishBirthAsync(ct).ConfigureAwait(false);
                    await PublishMetricsAsync(connection, ct).ConfigureAwait(false);
                    return reply;
                }
                catch (MqttPublishException ex)
                {
                    return reply with { Ok = false, Error = $"could not publish the birth message: {ex.Message}" };
                }

            case null:
                return reply with { Ok = false, Error = "the request is not JSON like {\"command\":\"ping\"}" };
            default:
                return reply with { Ok = false, Error = $"unknown command '{request.Command}'; expected one of: {string.Join(", ", DiagnosticRequest.Commands)}" };
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 500, Level = LogLevel.Warning, Message = "Diagnostics could not connect (attempt {Attempt}): {Reason}")]
        public static partial void ConnectFailed(ILogger logger, int attempt, string reason);

        [LoggerMessage(EventId = 501, Level = LogLevel.Debug, Message = "Diagnostics publish failed: {Reason}")]
        public static partial void PublishFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 502, Level = LogLevel.Warning, Message = "Ignored a diagnostic command whose response topic '{ResponseTopic}' is not a diagnostic reply topic")]
        public static partial void Unanswerable(ILogger logger, string responseTopic);
    }
}

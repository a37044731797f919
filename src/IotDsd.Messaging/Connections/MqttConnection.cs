using System.Buffers;
using System.Threading.Channels;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace IotDsd.Messaging.Connections;

/// <summary>
/// One MQTT 5 client connection with everything the roles need: large socket buffers and no Nagle delay, a receive
/// handler that only decodes and hands off to a bounded queue, publishes bounded by a timeout, a reconnect
/// supervisor with exponential backoff and jitter that resubscribes when the broker lost the session, and retained
/// presence (birth on every connect, last will with a delay).
/// <para>
/// The first connect of a process always subscribes, even when the broker kept the session of an earlier process
/// under the same client id: retained messages (the statuses of verifiers already online) are delivered only in answer
/// to a SUBSCRIBE, and a fresh process knows nothing of what its predecessor had learnt. Subscribing again to filters
/// the session already holds is idempotent at the broker. Later reconnects of the same process resubscribe only when
/// the session was lost (everything learnt so far is still in memory, and queued messages arrive with the session).
/// </para>
/// </summary>
public sealed partial class MqttConnection : IAsyncDisposable
{
    private readonly MqttSettings _settings;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IMqttClient _client;
    private readonly Channel<InboundMessage> _inbound;
    private readonly Func<string, bool> _isWireTopic;
    private readonly List<string> _subscriptions = [];
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private Task? _supervisor;
    private long _connections;
    private int _consecutiveTimeouts;
    private long _deadLinks;
    private bool _subscribed;
    private TaskCompletionSource _up = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="settings">Broker, identity and limits.</param>
    /// <param name="isWireTopic">Topics whose payloads are IotDsd envelopes; others are handed over raw.</param>
    /// <param name="logger">Where reasons for refused input go (never payloads).</param>
    /// <param name="time">Clock for timestamps and backoff.</param>
    public MqttConnection(MqttSettings settings, Func<string, bool> isWireTopic, ILogger logger, TimeProvider? time = null)
    {
        _settings = settings;
        _isWireTopic = isWireTopic;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _client = new MqttClientFactory().CreateMqttClient();
        _inbound = Channel.CreateBounded<InboundMessage>(new BoundedChannelOptions(settings.InboundQueue)
        {
            SingleReader = false,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _client.ApplicationMessageReceivedAsync += OnReceivedAsync;
        _client.DisconnectedAsync += OnDisconnectedAsync;
    }

    /// <summary>Decoded inbound messages, in arrival order.</summary>
    private int _disposed;

    public ChannelReader<InboundMessage> Inbound => _inbound.Reader;

    /// <summary>True while the client believes it is connected.</summary>
    public bool IsConnected => _client.IsConnected;

    /// <summary>Successful connects of this process (the birth counter unless presence has a persisted sequence).</summary>
    public long Connections => Interlocked.Read(ref _connections);

    /// <summary>Payloads refused at decode, by reason.</summary>
    public ErrorCounters DecodeErrors { get; } = new();

    /// <summary>Raised after every successful (re)connect; the flag says whether the broker kept the session.</summary>
    public event Action<bool>? Connected;

    /// <summary>Raised when the link drops.</summary>
    public event Action? Disconnected;

    /// <summary>Connects (failing after the connect timeout), subscribes and starts the reconnect supervisor.</summary>
    public async Task ConnectAsync(IReadOnlyList<string> subscriptions, CancellationToken ct)
    {
        _subscriptions.AddRange(subscriptions);
        await ConnectOnceAsync(ct).ConfigureAwait(false);
        _supervisor = Task.Run(() => SuperviseAsync(_stopping.Token), CancellationToken.None);
    }

    private async Task ConnectOnceAsync(CancellationToken ct)
    {
        await _connectLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_client.IsConnected)
            {
                return;
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_settings.ConnectTimeout);
            var result = await _client.ConnectAsync(BuildOptions(), timeout.Token).ConfigureAwait(false);
            if (result.ResultCode != MqttClientConnectResultCode.Success)
            {
                throw new MqttConnectionException($"broker {_settings.Broker} refused the connection: {result.ResultCode} {result.ReasonString}");
            }

            var counter = _settings.Presence?.Sequence?.Next() ?? Interlocked.Increment(ref _connections);
            if (_settings.Presence?.Sequence is not null)
            {
                Interlocked.Increment(ref _connections);
            }

            // A new process (nothing subscribed yet by this one) or a lost session: subscribe, which also brings the retained messages.
            if ((!_subscribed || !result.IsSessionPresent) && _subscriptions.Count > 0)
            {
                var builder = new MqttClientSubscribeOptionsBuilder();
                foreach (var filter in _subscriptions)
                {
                    builder.WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce);
                }

                var sub = await _client.SubscribeAsync(builder.Build(), timeout.Token).ConfigureAwait(false);
                foreach (var item in sub.Items)
                {
                    if ((int)item.ResultCode > 2)
                    {
                        throw new MqttConnectionException($"broker {_settings.Broker} refused subscription '{item.TopicFilter.Topic}': {item.ResultCode}");
                    }
                }

                _subscribed = true;
            }

            if (_settings.Presence is { } presence)
            {
                await PublishRawAsync(presence.Topic, presence.Birth(counter), retain: true, timeout.Token).ConfigureAwait(false);
            }

            Log.Connected(_logger, _settings.ClientId, _settings.Broker.ToString(), counter, result.IsSessionPresent);
            Interlocked.Exchange(ref _consecutiveTimeouts, 0);
            Volatile.Read(ref _up).TrySetResult();
            Connected?.Invoke(result.IsSessionPresent);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new MqttConnectionException($"could not connect to broker {_settings.Broker} within {_settings.ConnectTimeout.TotalSeconds:0.#} s");
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException ex) when (ct.IsCancellationRequested)
        {
            // MQTTnet reports a connect aborted by the caller as a closed connection: it is a stop, not a failure.
            throw new OperationCanceledException("connect cancelled", ex, ct);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException ex)
        {
            throw new MqttConnectionException($"could not connect to broker {_settings.Broker}: {Reason(ex)}", ex);
        }
        finally
        {
            _connectLock.Release();
        }
    }

    /// <summary>
    /// Why a connect failed, in one line: the innermost cause ("Connection refused", a TLS refusal), not MQTTnet's
    /// wrapper ("Error while connecting host ...").
    /// </summary>
    internal static string Reason(Exception ex)
    {
        var inner = ex;
        while (inner.InnerException is { } next)
        {
            inner = next;
        }

        var reason = inner.Message.ReplaceLineEndings(" ").Trim().TrimEnd('.');
        return reason.Length > 0 ? reason : ex.Message.ReplaceLineEndings(" ").Trim().TrimEnd('.');
    }

    private MqttClientOptions BuildOptions()
    {
        var builder = new MqttClientOptionsBuilder()
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(_settings.ClientId)
            .WithTcpServer(_settings.Broker.Host, _settings.Broker.Port)
            .WithKeepAlivePeriod(_settings.KeepAlive)
            .WithTimeout(_settings.ConnectTimeout)
            .WithCleanStart(_settings.CleanStart)
            .WithSessionExpiryInterval(_settings.SessionExpirySeconds);
        MqttSecurity.Apply(builder, _settings);

        if (_settings.Presence is { } presence)
        {
            builder.WithWillTopic(presence.Topic)
                .WithWillPayload(presence.Will)
                .WithWillRetain(true)
                .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithWillDelayInterval(presence.WillDelaySeconds);
        }

        var options = builder.Build();
        var tcp = (MqttClientTcpOptions)options.ChannelOptions;
        tcp.NoDelay = true;
        tcp.BufferSize = _settings.BufferBytes;
        options.WriterBufferSize = _settings.BufferBytes;
        options.WriterBufferSizeMax = Math.Max(_settings.BufferBytes, _settings.MaxPayloadBytes + 4096);
        return options;
    }

    private readonly SemaphoreSlim _linkLost = new(0, 1);

    private Task OnDisconnectedAsync(MqttClientDisconnectedEventArgs args)
    {
        // Never reconnect from inside this handler: wake the supervisor instead.
        if (!_stopping.IsCancellationRequested && args.ClientWasConnected)
        {
            Log.Disconnected(_logger, _settings.ClientId, args.Reason.ToString());
            if (Volatile.Read(ref _up).Task.IsCompleted)
            {
                Volatile.Write(ref _up, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            }

            Disconnected?.Invoke();
            if (_linkLost.CurrentCount == 0)
            {
                _linkLost.Release();
            }
        }

        return Task.CompletedTask;
    }

    private async Task SuperviseAsync(CancellationToken ct)
    {
        var attempt = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (_client.IsConnected)
                {
                    await _linkLost.WaitAsync(ct).ConfigureAwait(false);
                    attempt = 0;
                    continue;
                }

                await ConnectOnceAsync(ct).ConfigureAwait(false);
                attempt = 0;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is MqttConnectionException or MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException)
            {
                attempt++;
                var delay = Backoff(attempt, _settings.ReconnectMaxDelay);
                Log.ReconnectFailed(_logger, _settings.ClientId, attempt, delay.TotalMilliseconds, ex.Message);
                await Task.Delay(delay, _time, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Exponential backoff from 100 ms to 10 s with ±50 % jitter.</summary>
    public static TimeSpan Backoff(int attempt) => Backoff(attempt, TimeSpan.FromSeconds(10));

    /// <summary>Exponential backoff from 100 ms to <paramref name="max"/> with ±50 % jitter.</summary>
    public static TimeSpan Backoff(int attempt, TimeSpan max)
    {
        var baseMs = Math.Min(max.TotalMilliseconds, 100 * Math.Pow(2, Math.Min(attempt - 1, 10)));
        return TimeSpan.FromMilliseconds(baseMs * (0.5 + Random.Shared.NextDouble()));
    }

    private async Task OnReceivedAsync(MqttApplicationMessageReceivedEventArgs args)
    {
        // Decode and hand off; nothing else happens on the client's receive loop.
        ReportAlive();
        var message = args.ApplicationMessage;
        var payload = message.Payload;
        var length = (int)Math.Min(payload.Length, int.MaxValue);
        DecodeResult decoded = default;
        byte[]? raw = null;
        if (_isWireTopic(message.Topic))
        {
            decoded = WireCodec.Decode(payload, _settings.MaxPayloadBytes);
            if (!decoded.Ok)
            {
                DecodeErrors.Increment(decoded.Error!.Value);
                Log.Refused(_logger, message.Topic, decoded.Error!.Value, decoded.Reason ?? "");
            }
        }
        else if (length <= 64 * 1024)
        {
            raw = payload.ToArray();
        }

        var inbound = new InboundMessage(
            message.Topic, decoded, raw, message.ResponseTopic, message.CorrelationData, length, _time.GetTimestamp());
        try
        {
            await _inbound.Writer.WriteAsync(inbound, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Shutting down: the message stays unacknowledged and the broker redelivers it to the persistent session.
        }
        catch (ChannelClosedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Owners and hosts may both dispose (DI disposes what it created); the second call is a no-op.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_supervisor is not null)
        {
            try
            {
                await _supervisor.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        if (_client.IsConnected)
        {
            try
            {
                if (_settings.Presence is { } presence)
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    await PublishRawAsync(presence.Topic, presence.Will, retain: true, cts.Token).ConfigureAwait(false);
                }

                using var disconnect = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), disconnect.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is MqttPublishException or OperationCanceledException or MQTTnet.Exceptions.MqttCommunicationException)
            {
                Log.DisconnectFailed(_logger, _settings.ClientId, ex.Message);
            }
        }

        _inbound.Writer.TryComplete();
        _client.Dispose();
        _stopping.Dispose();
        _connectLock.Dispose();
        _linkLost.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "MQTT client {ClientId} connected to {Broker} (connection {Counter}, session present {SessionPresent})")]
        public static partial void Connected(ILogger logger, string clientId, string broker, long counter, bool sessionPresent);

        [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "MQTT client {ClientId} lost its link: {Reason}")]
        public static partial void Disconnected(ILogger logger, string clientId, string reason);

        [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "MQTT client {ClientId} reconnect attempt {Attempt} failed, next in {DelayMs:0} ms: {Reason}")]
        public static partial void ReconnectFailed(ILogger logger, string clientId, int attempt, double delayMs, string reason);

        [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Refused a message on {Topic}: {Code}: {Reason}")]
        public static partial void Refused(ILogger logger, string topic, ErrorCode code, string reason);

        [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "MQTT client {ClientId} saw {Count} timeouts in a row: the link is dead, reconnecting")]
        public static partial void DeadLink(ILogger logger, string clientId, int count);

        [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "MQTT client {ClientId}: the broker refused a publish to {Topic}: {Reason} (0x{Code:x2}); NotAuthorized means the broker ACL does not grant this client's identity that topic. Further refusals on this topic are counted in the metrics, not logged")]
        public static partial void PublishRefused(ILogger logger, string clientId, string topic, string reason, int code);

        [LoggerMessage(EventId = 104, Level = LogLevel.Debug, Message = "MQTT client {ClientId} could not disconnect cleanly: {Reason}")]
        public static partial void DisconnectFailed(ILogger logger, string clientId, string reason);
    }
}

using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using IotDsd.Verifier.Limits;
using IotDsd.Verifier.Sessions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// The verifier: takes rounds from many sessions off its MQTT queue, verifies them in batched forward passes of the
/// target model, and replies on each device's reply topic. One loop owns all session state; the MQTT receive loop
/// only decodes and enqueues.
/// </summary>
public sealed partial class VerifierService : BackgroundService
{
    private readonly VerifierOptions _options;
    private readonly ILanguageModel _target;
    private readonly ILogger<VerifierService> _logger;
    private readonly TimeProvider _time;
    private readonly SessionTable _sessions = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly LoadReporter _load;
    private MqttConnection? _connection;

    public VerifierService(VerifierOptions options, ILanguageModel target, ILogger<VerifierService> logger, TimeProvider? time = null)
    {
        if (options.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(options));
        }

        _options = options;
        _target = target;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        Limits = new LimitGuard(options.Limits, _sessions, target.VocabSize, _time, target.CacheBytesPerToken);
        _sessions.Budget = new KvBudget(options.Limits.KvBudgetBytes ?? KvBudget.DefaultBytes(), Limits.BytesPerCachedToken, options.Limits.KvEvictIdle, target as IKvPoolModel);
        _load = new LoadReporter(options, () => SessionCount, () => QueueDepth, _time, Limits.BytesPerCachedToken, () => Limits.AccountedBytes);
        StatusRejects = new PresenceRejects(logger, _time);
    }

    /// <summary>The load this verifier's retained status carries now.</summary>
    public VerifierLoad Load => _load.Current;

    /// <summary>Per-device limits and their refusal counters.</summary>
    public LimitGuard Limits { get; }

    public VerifierStats Stats { get; } = new();

    /// <summary>The global KV budget: its size, refusals and evictions.</summary>
    public KvBudget KvBudget => _sessions.Budget!;

    /// <summary>Bytes the target's KV pool has allocated now (host or GPU memory); 0 for a target without one.</summary>
    public long KvPoolBytes => (_target as IKvPoolModel)?.KvPoolBytes ?? 0;

    /// <summary>Refusals by reason: decode failures and refused requests.</summary>
    public ErrorCounters Errors { get; } = new();

    /// <summary>Completes once connected and subscribed.</summary>
    public Task Ready => _ready.Task;

    public string VerifierId => _options.VerifierId;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = _options.Mqtt($"iotdsd-verifier-{_options.VerifierId}") with
        {
            CleanStart = false,
            SessionExpirySeconds = 300,
            Presence = PresencePayload.For(
                TopicScheme.VerifierStatus(_options.VerifierId), "verifier", _options.VerifierId, _target.Name,
                willDelaySeconds: (uint)_options.WillDelay.TotalSeconds,
                sequence: _options.StateDirectory is { } dir ? PresenceSequence.Open(dir, "verifier", _options.VerifierId, _logger) : null,
                load: () => _load.Current),
        };
        var prefix = $"{TopicScheme.Root}/verifiers/{_options.VerifierId}/rounds/";
        await using var connection = new MqttConnection(settings, t => t.StartsWith(prefix, StringComparison.Ordinal), _logger, _time);
        _connection = connection;
        try
        {
            // Its own status topic too: whatever else lands there (a stray or hostile publish replacing the retained
            // status) is answered by publishing the birth again, so devices that start later still find this verifier.
            await connection.ConnectAsync([TopicScheme.VerifierRoundsFilter(_options.VerifierId), TopicScheme.VerifierStatus(_options.VerifierId)], stoppingToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _ready.TrySetException(ex);
            throw;
        }

        _ready.TrySetResult();
        Log.Started(_logger, _options.VerifierId, _options.Broker.ToString(), _target.Name);
        var processor = new RoundProcessor(_options, _target, _sessions, connection, Stats, Errors, Limits, _logger, _time);
        processor.Calibrate();
        var batch = new List<InboundMessage>(_options.MaxBatch);
        var nextSweep = _time.GetTimestamp();
        using var reportingStop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var reporting = _load.RunAsync(connection, reportingStop.Token);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                batch.Clear();
                if (processor.Streaming)
                {
                    // Streamed rounds decode on every pass: take what has arrived, never wait for more.
                    while (batch.Count < _options.MaxBatch && connection.Inbound.TryRead(out var more))
                    {
                        batch.Add(more);
                    }
                }
                else
                {
                    batch.Add(await connection.Inbound.ReadAsync(stoppingToken).ConfigureAwait(false));
                    await GatherAsync(connection, batch, stoppingToken).ConfigureAwait(false);
                }

                batch.RemoveAll(m => OwnStatus(connection, m, stoppingToken));
                if (batch.Count == 0 && !processor.Streaming)
                {
                    continue;
                }

                var started = _time.GetTimestamp();
                await processor.ProcessAsync(batch, stoppingToken).ConfigureAwait(false);
                Limits.Account();
                _load.Batch(started, _time.GetTimestamp());
                if (_time.GetTimestamp() >= nextSweep)
                {
                    var cutoff = _time.GetTimestamp() - (long)(_options.SessionIdleTimeout.TotalSeconds * Stopwatch.Frequency);
                    var expired = _sessions.Expire(cutoff);
                    if (expired > 0)
                    {
                        Limits.Account();
                        Log.Expired(_logger, expired, _options.SessionIdleTimeout.TotalSeconds);
                    }

                    nextSweep = _time.GetTimestamp() + (10 * Stopwatch.Frequency);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await reportingStop.CancelAsync().ConfigureAwait(false);
            await reporting.ConfigureAwait(false); // stopped before the connection goes: no status publish races the offline one
            _sessions.Dispose();
        }
    }

    /// <summary>Takes whatever else is queued, waiting at most the batch window for more.</summary>
    /// <summary>Statuses on this verifier's own topic that were not its own, by reason.</summary>
    public PresenceRejects StatusRejects { get; }

    private long _reassertedAt;
    private int _reassertPending;

    /// <summary>
    /// True (handled) for a message on this verifier's own status topic. Its own online status (the echo of its birth
    /// or load refresh) is left alone; anything else there (an offline status, a cleared or malformed one, another
    /// peer's) has replaced the retained status devices discover it by, so the birth is published again, at most
    /// once a second (a burst gets one republish at once and one after it, so the retained status ends as the birth).
    /// </summary>
    private bool OwnStatus(MqttConnection connection, InboundMessage message, CancellationToken ct)
    {
        var topic = TopicScheme.VerifierStatus(_options.VerifierId);
        if (message.Topic != topic)
        {
            return false;
        }

        var reading = PresenceCheck.Read("verifier", _options.VerifierId, message.Raw, message.PayloadBytes);
        if (reading.Kind == PresenceKind.Online)
        {
            return true;
        }

        if (reading.Kind == PresenceKind.Rejected)
        {
            StatusRejects.Add(topic, reading.Reason!, message.PayloadBytes);
        }

        if (Interlocked.Exchange(ref _reassertPending, 1) == 1)
        {
            return true; // a republish is already due: it lands after this message too
        }

        var last = Interlocked.Read(ref _reassertedAt);
        var wait = last == 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(1) - _time.GetElapsedTime(last);
        Log.Reasserting(_logger, _options.VerifierId, reading.Reason ?? reading.Kind.ToString().ToLowerInvariant());
        _ = ReassertAsync(connection, wait, ct);
        return true;
    }

    private async Task ReassertAsync(MqttConnection connection, TimeSpan wait, CancellationToken ct)
    {
        try
        {
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, _time, ct).ConfigureAwait(false);
            }

            Interlocked.Exchange(ref _reassertedAt, _time.GetTimestamp());
            Volatile.Write(ref _reassertPending, 0);
            await connection.RepublishBirthAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is MqttPublishException or OperationCanceledException or ObjectDisposedException)
        {
            // The next stray status, load refresh or reconnect publishes it again.
            Volatile.Write(ref _reassertPending, 0);
        }
    }

    private async Task GatherAsync(MqttConnection connection, List<InboundMessage> batch, CancellationToken ct)
    {
        var reader = connection.Inbound;
        while (batch.Count < _options.MaxBatch && reader.TryRead(out var more))
        {
            batch.Add(more);
        }

        // Waiting only pays when other sessions may send a round within the window; a lone session never waits.
        if (batch.Count >= _options.MaxBatch || _options.BatchWait <= TimeSpan.Zero || batch.Count >= _sessions.Count)
        {
            return;
        }

        using var window = CancellationTokenSource.CreateLinkedTokenSource(ct);
        window.CancelAfter(_options.BatchWait);
        try
        {
            // Every held session already in the batch: nobody else can join, so stop waiting.
            while (batch.Count < _options.MaxBatch && batch.Count < _sessions.Count && await reader.WaitToReadAsync(window.Token).ConfigureAwait(false))
            {
                while (batch.Count < _options.MaxBatch && reader.TryRead(out var more))
                {
                    batch.Add(more);
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>The service's MQTT connection once started (diagnostics read its state).</summary>
    public MqttConnection? Connection => _connection;

    /// <summary>Sessions held now.</summary>
    public int SessionCount => _sessions.Count;

    /// <summary>Queue depth now, for load feedback.</summary>
    public int QueueDepth => _connection?.Inbound.CanCount == true ? _connection.Inbound.Count : 0;

    public override void Dispose()
    {
        base.Dispose();
        _sessions.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "Verifier {VerifierId} serving on {Broker} with target {Model}")]
        public static partial void Started(ILogger logger, string verifierId, string broker, string model);

        [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "Verifier {VerifierId}: its retained status was replaced ({Kind}); publishing its birth again")]
        public static partial void Reasserting(ILogger logger, string verifierId, string kind);

        [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "Expired {Count} sessions idle for more than {Seconds} s")]
        public static partial void Expired(ILogger logger, int count, double seconds);
    }
}

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
        _load = new LoadReporter(options, () => SessionCount, () => QueueDepth, _time, Limits.BytesPerCachedToken, () => Limits.AccountedBytes);
    }

    /// <summary>The load this verifier's retained status carries now.</summary>
    public VerifierLoad Load => _load.Current;

    /// <summary>Per-device limits and their refusal counters.</summary>
    public LimitGuard Limits { get; }

    public VerifierStats Stats { get; } = new();

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
            await connection.ConnectAsync([TopicScheme.VerifierRoundsFilter(_options.VerifierId)], stoppingToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _ready.TrySetException(ex);
            throw;
        }

        _ready.TrySetResult();
        Log.Started(_logger, _options.VerifierId, _options.Broker.ToString(), _target.Name);
        var processor = new RoundProcessor(_options, _target, _sessions, connection, Stats, Errors, Limits, _logger, _time);
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

        [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "Expired {Count} sessions idle for more than {Seconds} s")]
        public static partial void Expired(ILogger logger, int count, double seconds);
    }
}

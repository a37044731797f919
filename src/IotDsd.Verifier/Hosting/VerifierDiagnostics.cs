using IotDsd.Messaging.Diagnostics;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// What a verifier shows to field diagnostics: its link, sessions, queue depth, batch sizes, refusals by reason, and
/// the acceptance and committed tokens per second over the interval since the previous snapshot.
/// </summary>
public sealed class VerifierDiagnostics(VerifierService service, string model, IReadOnlyList<ConfigEntry> configuration, TimeProvider time)
    : IDiagnosticsSource
{
    private readonly object _gate = new();
    private long _lastAt = time.GetTimestamp();
    private long _lastCommitted;
    private long _lastDrafted;
    private long _lastAccepted;
    private double? _tokensPerSecond;
    private double? _acceptance;

    /// <summary>From process start to the first MQTT connect; set by the host once the service is ready.</summary>
    public TimeSpan? StartupTime { get; set; }

    public string Role => "verifier";

    public string Id => service.VerifierId;

    public MetricsPayload Snapshot()
    {
        var stats = service.Stats;
        lock (_gate)
        {
            var now = time.GetTimestamp();
            var seconds = time.GetElapsedTime(_lastAt, now).TotalSeconds;
            var committed = stats.Committed;
            var drafted = stats.Drafted;
            var accepted = stats.Accepted;
            if (seconds >= 0.5)
            {
                _tokensPerSecond = Math.Round((committed - _lastCommitted) / seconds, 1);
                if (drafted > _lastDrafted)
                {
                    _acceptance = Math.Round((double)(accepted - _lastAccepted) / (drafted - _lastDrafted), 4);
                }

                (_lastAt, _lastCommitted, _lastDrafted, _lastAccepted) = (now, committed, drafted, accepted);
            }

            var connection = service.Connection;
            return new MetricsPayload
            {
                Role = Role,
                Id = Id,
                Model = model,
                TimestampMs = ProcessClock.NowMs(time),
                UptimeSeconds = Math.Round(ProcessClock.SinceStart(time).TotalSeconds, 1),
                StartupMs = StartupTime is { } s ? Math.Round(s.TotalMilliseconds, 1) : null,
                Connected = connection?.IsConnected ?? false,
                Connections = connection?.Connections ?? 0,
                Acceptance = _acceptance,
                TokensPerSecond = _tokensPerSecond,
                QueueDepth = service.QueueDepth,
                Sessions = service.SessionCount,
                Rounds = stats.Rounds,
                Tokens = committed,
                Errors = Errors(service, connection),
                Extra = new Dictionary<string, double>
                {
                    ["mean_batch"] = Math.Round(stats.MeanBatch, 2),
                    ["max_batch"] = stats.MaxBatch,
                    ["duplicates"] = stats.Duplicates,
                    ["cache_bytes_per_token"] = service.Limits.BytesPerCachedToken,
                    ["memory_bytes"] = service.Limits.AccountedBytes,
                    ["kv_budget_bytes"] = service.KvBudget.BudgetBytes,
                    ["kv_pool_bytes"] = service.KvPoolBytes,
                    ["kv_refusals"] = service.KvBudget.Refusals,
                    ["kv_evictions"] = service.KvBudget.Evictions,
                },
            }.WithPublishRefusals(connection?.PublishesRefused ?? 0);
        }
    }

    public IReadOnlyList<ConfigEntry> EffectiveConfiguration() => configuration;

    public Task RepublishBirthAsync(CancellationToken ct) => service.Connection?.RepublishBirthAsync(ct) ?? Task.CompletedTask;

    private static Dictionary<string, long> Errors(VerifierService service, Messaging.Connections.MqttConnection? connection)
    {
        var all = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (code, count) in service.Errors.Snapshot())
        {
            all["refused_" + code] = count;
        }

        foreach (var (code, count) in connection?.DecodeErrors.Snapshot() ?? new Dictionary<string, long>())
        {
            all["decode_" + code] = count;
        }

        return all;
    }
}

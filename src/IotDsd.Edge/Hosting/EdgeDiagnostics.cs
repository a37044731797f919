using IotDsd.Edge.Drafting;
using IotDsd.Messaging.Diagnostics;

namespace IotDsd.Edge.Hosting;

/// <summary>What a device shows to field diagnostics: its worker's link, its live metrics and its settings.</summary>
public sealed class EdgeDiagnostics(
    EdgeOptions options, DraftWorker worker, Func<TimeSpan?> startupTime, EdgeMetrics metrics, string model, IReadOnlyList<ConfigEntry> configuration, TimeProvider time)
    : IDiagnosticsSource
{
    public string Role => "device";

    public string Id => options.DeviceId;

    public MetricsPayload Snapshot()
    {
        var m = metrics.Snapshot();
        var connection = worker.Connection;
        return new MetricsPayload
        {
            Role = Role,
            Id = Id,
            Model = model,
            TimestampMs = ProcessClock.NowMs(time),
            UptimeSeconds = Math.Round(ProcessClock.SinceStart(time).TotalSeconds, 1),
            StartupMs = startupTime() is { } s ? Math.Round(s.TotalMilliseconds, 1) : null,
            Connected = connection?.IsConnected ?? false,
            Connections = connection?.Connections ?? 0,
            Degradation = m.Degradation,
            Acceptance = Round(m.Acceptance, 4),
            TokensPerSecond = Round(m.TokensPerSecond, 1),
            RttMs = Round(m.RttMs, 3),
            Gamma = m.Gamma,
            QueueDepth = metrics.QueueDepth,
            Sessions = metrics.QueueDepth,
            Rounds = m.Rounds,
            Tokens = m.Tokens,
            Errors = Merge(m.Errors, connection?.DecodeErrors.Snapshot()),
            Extra = new Dictionary<string, double> { ["generations"] = m.Generations },
        }.WithPublishRefusals(connection?.PublishesRefused ?? 0);
    }

    public IReadOnlyList<ConfigEntry> EffectiveConfiguration() => configuration;

    public Task RepublishBirthAsync(CancellationToken ct) => worker.Connection?.RepublishBirthAsync(ct) ?? Task.CompletedTask;

    private static double? Round(double? value, int digits) => value is { } v ? Math.Round(v, digits) : null;

    /// <summary>Worker errors and the connection's decode refusals (prefixed <c>decode_</c>) in one table.</summary>
    internal static IReadOnlyDictionary<string, long> Merge(IReadOnlyDictionary<string, long> errors, IReadOnlyDictionary<string, long>? decode)
    {
        var all = new Dictionary<string, long>(errors, StringComparer.Ordinal);
        foreach (var (code, count) in decode ?? new Dictionary<string, long>())
        {
            all["decode_" + code] = count;
        }

        return all;
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>Renders the fleet view as a fixed-width table or as JSON.</summary>
public static class FleetTable
{
    private static readonly string[] Header = ["ROLE", "ID", "STATE", "CONN", "BOOT", "LEVEL", "ACCEPT", "TOK/S", "RTT ms", "GAMMA", "QUEUE", "SESS", "MEM", "ROUNDS", "ERRORS", "VERSION", "AGE"];

    public static string Render(IReadOnlyList<FleetRow> rows, long nowMs)
    {
        var table = new List<string[]> { Header };
        foreach (var r in rows)
        {
            var m = r.Metrics;
            table.Add([
                r.Role,
                r.Id,
                r.State,
                r.Connection.ToString(CultureInfo.InvariantCulture),
                r.Boot?.ToString(CultureInfo.InvariantCulture) ?? "-",
                m?.Degradation ?? "-",
                m?.Acceptance is { } a ? a.ToString("P0", CultureInfo.InvariantCulture) : "-",
                Number(m?.TokensPerSecond, "0.0"),
                Number(m?.RttMs, "0.00"),
                m?.Gamma?.ToString(CultureInfo.InvariantCulture) ?? "-",
                m?.QueueDepth.ToString(CultureInfo.InvariantCulture) ?? "-",
                m?.Sessions.ToString(CultureInfo.InvariantCulture) ?? "-",
                Memory(m),
                m?.Rounds.ToString(CultureInfo.InvariantCulture) ?? "-",
                m is null ? "-" : m.Errors.Count == 0 ? "0" : string.Join(",", m.Errors.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}={e.Value}")),
                r.Version ?? "-",
                m is null ? "-" : string.Create(CultureInfo.InvariantCulture, $"{Math.Max(0, nowMs - m.TimestampMs) / 1000.0:0.0}s"),
            ]);
        }

        var widths = Enumerable.Range(0, Header.Length).Select(i => table.Max(row => row[i].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in table)
        {
            text.AppendLine(string.Join("  ", row.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
        }

        return text.ToString();
    }

    public static string Json(IReadOnlyList<FleetRow> rows) =>
        JsonSerializer.Serialize(rows.Select(r => new Dictionary<string, object?>
        {
            ["role"] = r.Role,
            ["id"] = r.Id,
            ["state"] = r.State,
            ["connection"] = r.Connection,
            ["boot"] = r.Boot,
            ["version"] = r.Version,
            ["model"] = r.Model,
            ["metrics"] = r.Metrics,
        }));

    /// <summary>A verifier's accounted session memory and the cache bytes per token it charges, e.g. <c>3.4MiB@72KiB/tok</c>.</summary>
    public static string Memory(MetricsPayload? m) =>
        m?.Extra is { } extra && extra.TryGetValue("memory_bytes", out var bytes) && extra.TryGetValue("cache_bytes_per_token", out var perToken)
            ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (1 << 20):0.0}MiB@{perToken / 1024:0.#}KiB/tok")
            : "-";

    private static string Number(double? value, string format) => value is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "-";
}

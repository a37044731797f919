using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using IotDsd.Edge.Drafting;

namespace IotDsd.Testbed.Reporting;

/// <summary>The JSON line printed per completion with <c>--json</c>.</summary>
internal sealed record CompletionJson
{
    [JsonPropertyName("text")] public required string Text { get; init; }
    [JsonPropertyName("tokens")] public int Tokens { get; init; }
    [JsonPropertyName("stop_reason")] public string StopReason { get; init; } = "max_tokens";
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("acceptance_rate")] public double AcceptanceRate { get; init; }
    [JsonPropertyName("mean_accepted")] public double MeanAccepted { get; init; }
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("uplink_bytes")] public long UplinkBytes { get; init; }
    [JsonPropertyName("downlink_bytes")] public long DownlinkBytes { get; init; }
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("gamma")] public int Gamma { get; init; }
    [JsonPropertyName("seed")] public ulong Seed { get; init; }
    [JsonPropertyName("uplink_wire_bytes")] public long UplinkWireBytes { get; init; }
    [JsonPropertyName("downlink_wire_bytes")] public long DownlinkWireBytes { get; init; }
    [JsonPropertyName("uplink_bytes_per_token")] public double UplinkBytesPerToken { get; init; }
    [JsonPropertyName("downlink_bytes_per_token")] public double DownlinkBytesPerToken { get; init; }
    [JsonPropertyName("time_to_first_token_ms")] public double TimeToFirstTokenMs { get; init; }
    [JsonPropertyName("time_per_token_ms")] public double TimePerTokenMs { get; init; }
    [JsonPropertyName("round_ms_p50")] public double RoundMsP50 { get; init; }
    [JsonPropertyName("round_ms_p99")] public double RoundMsP99 { get; init; }
    [JsonPropertyName("rsr_followups")] public long FollowUps { get; init; }
    [JsonPropertyName("retries")] public long Retries { get; init; }
    [JsonPropertyName("mean_batch")] public double MeanBatch { get; init; }
    [JsonPropertyName("session")] public string? Session { get; init; }
    [JsonPropertyName("verifier")] public string? Verifier { get; init; }
    [JsonPropertyName("unverified_tokens_shown")] public long UnverifiedTokensShown { get; init; }
    [JsonPropertyName("link_drops")] public long LinkDrops { get; init; }
    [JsonPropertyName("resumed_tokens")] public int ResumedTokens { get; init; }
    [JsonPropertyName("state_bytes_written")] public long StateBytesWritten { get; init; }
    [JsonPropertyName("state_fsyncs")] public long StateFsyncs { get; init; }
    [JsonPropertyName("reopens")] public long Reopens { get; init; }
    [JsonPropertyName("recovery_ms")] public IReadOnlyList<double> RecoveryMs { get; init; } = [];
    [JsonPropertyName("failover_ms")] public IReadOnlyList<double> FailoverMs { get; init; } = [];
    [JsonPropertyName("ms_at_level")] public IReadOnlyDictionary<string, double> MsAtLevel { get; init; } = new Dictionary<string, double>();

    public static CompletionJson From(GenerationReport r, string text) => new()
    {
        Text = text,
        Tokens = r.Tokens.Count,
        StopReason = r.StopReason == Core.Sessions.StopReason.Eos ? "eos" : "max_tokens",
        Rounds = r.Rounds,
        AcceptanceRate = Math.Round(r.AcceptanceRate, 4),
        MeanAccepted = Math.Round(r.MeanAccepted, 4),
        TokensPerSecond = Math.Round(r.TokensPerSecond, 1),
        UplinkBytes = r.UplinkPayloadBytes,
        DownlinkBytes = r.DownlinkPayloadBytes,
        Mode = r.Mode.ToString().ToLowerInvariant(),
        Gamma = r.Gamma,
        Seed = r.Seed,
        UplinkWireBytes = r.UplinkWireBytes,
        DownlinkWireBytes = r.DownlinkWireBytes,
        UplinkBytesPerToken = Math.Round(r.UplinkBytesPerToken, 2),
        DownlinkBytesPerToken = Math.Round(r.DownlinkBytesPerToken, 2),
        TimeToFirstTokenMs = Math.Round(r.TimeToFirstToken.TotalMilliseconds, 3),
        TimePerTokenMs = Math.Round(r.TimePerTokenMs, 4),
        RoundMsP50 = Math.Round(Percentile(r.RoundMillis, 0.50), 3),
        RoundMsP99 = Math.Round(Percentile(r.RoundMillis, 0.99), 3),
        FollowUps = r.FollowUps,
        Retries = r.Retries,
        MeanBatch = Math.Round(r.MeanBatch, 2),
        Session = r.SessionId,
        Verifier = r.VerifierId,
        UnverifiedTokensShown = r.Faults.UnverifiedTokensShown,
        LinkDrops = r.Faults.LinkDrops,
        ResumedTokens = r.Faults.ResumedTokens,
        StateBytesWritten = r.StateBytesWritten,
        StateFsyncs = r.StateSyncs,
        Reopens = r.Reopens,
        RecoveryMs = [.. r.Faults.RecoveryMillis.Select(v => Math.Round(v, 1))],
        FailoverMs = [.. r.Faults.FailoverMillis.Select(v => Math.Round(v, 1))],
        MsAtLevel = r.Faults.MillisAtLevel.Where(kv => kv.Value > 0).ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value, 1)),
    };

    public string ToLine() => JsonSerializer.Serialize(this);

    /// <summary>Nearest-rank percentile; 0 for an empty list.</summary>
    public static double Percentile(IReadOnlyList<double> values, double q) => Percentiles.Of(values, q);
}

/// <summary>The human summary printed after the streamed text.</summary>
internal static class Summary
{
    public static string Of(GenerationReport r) => Core(r) + (r.StopReason == IotDsd.Core.Sessions.StopReason.Eos ? "; stopped at end of sequence" : "") + Faults(r);

    private static string Core(GenerationReport r) => string.Create(
        CultureInfo.InvariantCulture,
        $"[{r.Mode.ToString().ToLowerInvariant()} γ={r.Gamma} seed={r.Seed}] {r.Tokens.Count} tokens, {r.Rounds} rounds, " +
        $"acceptance {r.AcceptanceRate:P1}, mean accepted {r.MeanAccepted:0.00}/round, {r.TokensPerSecond:0} tokens/s, " +
        $"first token {r.TimeToFirstToken.TotalMilliseconds:0.0} ms, uplink {r.UplinkBytesPerToken:0.0} B/token, " +
        $"downlink {r.DownlinkBytesPerToken:0.0} B/token (payload; {(double)r.UplinkWireBytes / Math.Max(1, r.Tokens.Count):0.0}/" +
        $"{(double)r.DownlinkWireBytes / Math.Max(1, r.Tokens.Count):0.0} on the wire)");

    private static string Faults(GenerationReport r)
    {
        var f = r.Faults;
        if (f.LinkDrops == 0 && r.Retries == 0 && r.Reopens == 0 && f.ResumedTokens == 0 && f.LevelTransitions == 0)
        {
            // A ladder held below normal from the start (iotdsd demo --level) still says where it ran.
            var held = f.MillisAtLevel.Where(kv => kv.Value > 0).Select(kv => kv.Key).ToList();
            return held is [var only] && only != "normal" ? $"; level: {only}" : "";
        }

        var levels = string.Join(", ", f.MillisAtLevel.Where(kv => kv.Value > 0).Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value / 1000:0.0} s")));
        var lossy = f.ShowedUnverified ? " (lossy, not in the text)" : "";
        return string.Create(
            CultureInfo.InvariantCulture,
            $"; faults: {f.LinkDrops} link drops, {r.Retries} retries, {r.Reopens} reopens, {f.ResumedTokens} tokens resumed, {f.UnverifiedTokensShown} unverified tokens shown{lossy}; levels: {levels}");
    }
}

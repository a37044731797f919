using System.Text.Json.Serialization;
using IotDsd.Testbed.Reporting;

namespace IotDsd.Testbed.Load;

/// <summary>One device's generation under load, speculative or streamed, reduced to what the load report needs.</summary>
internal sealed record SessionSample(
    int Tokens,
    int Expected,
    bool MatchesReference,
    double ElapsedMs,
    double FirstTokenMs,
    IReadOnlyList<double> StepMillis,
    long UplinkPayload,
    long DownlinkPayload,
    long UplinkWire,
    long DownlinkWire,
    double MeanBatch,
    long Retries,
    long Duplicates,
    long Drafted,
    long Accepted)
{
    /// <summary>The verifier (or server) the session ran on.</summary>
    public string? Verifier { get; init; }

    /// <summary>The largest forward pass the session's replies reported.</summary>
    public int MaxBatch { get; init; }

    /// <summary>Rounds, and those without drafts (the verifier decoded: streamed rounds).</summary>
    public int Rounds { get; init; }

    public int UndraftedRounds { get; init; }

    /// <summary>Time per output token after the first.</summary>
    public double TimePerTokenMs => Tokens <= 1 ? ElapsedMs : (ElapsedMs - FirstTokenMs) / (Tokens - 1);
}

/// <summary>CPU seconds and resident memory of a process, read from /proc, for the broker and verifier columns.</summary>
internal sealed record ProcessUsage(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("pid")] int Pid,
    [property: JsonPropertyName("cpu_s")] double CpuSeconds,
    [property: JsonPropertyName("cpu_percent")] double CpuPercent,
    [property: JsonPropertyName("rss_mb")] double RssMb);

/// <summary>The load generator's report (<c>--json</c>: one object).</summary>
internal sealed record LoadReport
{
    [JsonPropertyName("system")] public required string System { get; init; }
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("devices")] public int Devices { get; init; }
    [JsonPropertyName("completed")] public int Completed { get; init; }
    [JsonPropertyName("failed")] public int Failed { get; init; }
    [JsonPropertyName("tokens")] public long Tokens { get; init; }
    [JsonPropertyName("wall_s")] public double WallSeconds { get; init; }
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("tpot_ms_p50")] public double TpotP50 { get; init; }
    [JsonPropertyName("tpot_ms_p99")] public double TpotP99 { get; init; }
    [JsonPropertyName("ttft_ms_p50")] public double TtftP50 { get; init; }
    [JsonPropertyName("ttft_ms_p99")] public double TtftP99 { get; init; }
    [JsonPropertyName("round_ms_p50")] public double RoundP50 { get; init; }
    [JsonPropertyName("round_ms_p99")] public double RoundP99 { get; init; }
    [JsonPropertyName("acceptance_rate")] public double AcceptanceRate { get; init; }
    [JsonPropertyName("uplink_bytes_per_token")] public double UplinkPerToken { get; init; }
    [JsonPropertyName("downlink_bytes_per_token")] public double DownlinkPerToken { get; init; }
    [JsonPropertyName("wire_bytes_per_token")] public double WirePerToken { get; init; }
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("undrafted_rounds")] public long UndraftedRounds { get; init; }
    [JsonPropertyName("mean_batch")] public double MeanBatch { get; init; }
    [JsonPropertyName("max_batch")] public long MaxBatch { get; init; }
    [JsonPropertyName("retries")] public long Retries { get; init; }
    [JsonPropertyName("lost_tokens")] public long LostTokens { get; init; }
    [JsonPropertyName("duplicated_tokens")] public long DuplicatedTokens { get; init; }
    [JsonPropertyName("reference_mismatches")] public int ReferenceMismatches { get; init; }
    [JsonPropertyName("sessions_by_verifier")] public IReadOnlyDictionary<string, int> SessionsByVerifier { get; init; } = new Dictionary<string, int>();
    [JsonPropertyName("processes")] public IReadOnlyList<ProcessUsage> Processes { get; init; } = [];
    [JsonPropertyName("errors")] public IReadOnlyList<string> Errors { get; init; } = [];

    public static LoadReport From(string system, string mode, int devices, IReadOnlyList<SessionSample> samples, IReadOnlyList<string> errors, double wallSeconds, long maxBatch, double? meanBatch, IReadOnlyList<ProcessUsage> processes)
    {
        var tokens = samples.Sum(s => (long)s.Tokens);
        var drafted = samples.Sum(s => s.Drafted);
        var steps = samples.SelectMany(s => s.StepMillis).ToArray();
        return new LoadReport
        {
            System = system,
            Mode = mode,
            Devices = devices,
            Completed = samples.Count,
            Failed = errors.Count,
            Tokens = tokens,
            WallSeconds = Math.Round(wallSeconds, 3),
            TokensPerSecond = Math.Round(wallSeconds <= 0 ? 0 : tokens / wallSeconds, 1),
            TpotP50 = Round(Percentiles.Of([.. samples.Select(s => s.TimePerTokenMs)], 0.50)),
            TpotP99 = Round(Percentiles.Of([.. samples.Select(s => s.TimePerTokenMs)], 0.99)),
            TtftP50 = Round(Percentiles.Of([.. samples.Select(s => s.FirstTokenMs)], 0.50)),
            TtftP99 = Round(Percentiles.Of([.. samples.Select(s => s.FirstTokenMs)], 0.99)),
            RoundP50 = Round(Percentiles.Of(steps, 0.50)),
            RoundP99 = Round(Percentiles.Of(steps, 0.99)),
            AcceptanceRate = drafted == 0 ? 0 : Math.Round((double)samples.Sum(s => s.Accepted) / drafted, 4),
            UplinkPerToken = PerToken(samples.Sum(s => s.UplinkPayload), tokens),
            DownlinkPerToken = PerToken(samples.Sum(s => s.DownlinkPayload), tokens),
            WirePerToken = PerToken(samples.Sum(s => s.UplinkWire + s.DownlinkWire), tokens),
            Rounds = samples.Sum(s => (long)s.Rounds),
            UndraftedRounds = samples.Sum(s => (long)s.UndraftedRounds),
            MeanBatch = Math.Round(meanBatch ?? (samples.Count == 0 ? 0 : samples.Average(s => s.MeanBatch)), 2),
            // The in-process verifier counts every pass; against an external one, the largest any reply reported.
            MaxBatch = Math.Max(maxBatch, samples.Count == 0 ? 0 : samples.Max(s => s.MaxBatch)),
            Retries = samples.Sum(s => s.Retries),
            LostTokens = samples.Sum(s => (long)Math.Max(0, s.Expected - s.Tokens)),
            DuplicatedTokens = samples.Sum(s => s.Duplicates + Math.Max(0, s.Tokens - s.Expected)),
            ReferenceMismatches = samples.Count(s => !s.MatchesReference),
            SessionsByVerifier = samples.Where(s => s.Verifier is not null).GroupBy(s => s.Verifier!).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            Processes = processes,
            Errors = [.. errors.Take(10)],
        };
    }

    public string Summary()
    {
        var text = new global::System.Text.StringBuilder();
        text.AppendLine(FormattableString.Invariant($"[{System} {Mode}] {Devices} devices, {Completed} completed, {Failed} failed, {Tokens} tokens in {WallSeconds:0.00} s = {TokensPerSecond:0} tokens/s"));
        text.AppendLine(FormattableString.Invariant($"  time per output token p50 {TpotP50:0.00} ms  p99 {TpotP99:0.00} ms;  first token p50 {TtftP50:0.0} ms  p99 {TtftP99:0.0} ms"));
        text.AppendLine(FormattableString.Invariant($"  {(System == "iotdsd" ? "round" : "token gap")} p50 {RoundP50:0.00} ms  p99 {RoundP99:0.00} ms;  acceptance {AcceptanceRate * 100:0.0} %;  batch mean {MeanBatch:0.0}{(MaxBatch > 0 ? FormattableString.Invariant($" max {MaxBatch}") : "")}"));
        text.AppendLine(FormattableString.Invariant($"  bytes per token: uplink {UplinkPerToken:0.0}, downlink {DownlinkPerToken:0.0} (payload), {WirePerToken:0.0} on the wire"));
        text.Append(FormattableString.Invariant($"  retries {Retries}, lost tokens {LostTokens}, duplicated tokens {DuplicatedTokens}, reference mismatches {ReferenceMismatches}"));
        if (SessionsByVerifier.Count > 1)
        {
            text.Append("\n  sessions by verifier: ").AppendJoin(", ", SessionsByVerifier.Select(kv => $"{kv.Key} {kv.Value}"));
        }

        foreach (var p in Processes)
        {
            text.Append(FormattableString.Invariant($"\n  {p.Name} (pid {p.Pid}): {p.CpuSeconds:0.0} CPU s ({p.CpuPercent:0} %), {p.RssMb:0.0} MB resident"));
        }

        foreach (var e in Errors)
        {
            text.Append("\n  error: ").Append(e);
        }

        return text.ToString();
    }

    private static double Round(double v) => Math.Round(v, 3);

    private static double PerToken(long bytes, long tokens) => tokens == 0 ? 0 : Math.Round((double)bytes / tokens, 2);
}

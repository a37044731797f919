using System.Text.Json.Serialization;
using IotDsd.Sim.Calibration;
using IotDsd.Sim.Engine;
using IotDsd.Testbed.Reporting;
using SimLink = IotDsd.Sim.Scenarios.LinkProfile;

namespace IotDsd.Testbed.Benches;

/// <summary>One Table A cell: one pair, one delay, one shape.</summary>
internal sealed record WanRowA
{
    [JsonPropertyName("pair")] public required string Pair { get; init; }
    [JsonPropertyName("one_way_ms")] public int OneWayMs { get; init; }
    [JsonPropertyName("shape")] public required string Shape { get; init; }
    [JsonPropertyName("status")] public required string Status { get; init; }
    [JsonPropertyName("tokens")] public int Tokens { get; init; }
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("tokens_per_round")] public double TokensPerRound { get; init; }

    /// <summary>Tokens committed per round-trip time of the link (tokens/s × 2 × delay); 0 at delay 0.</summary>
    [JsonPropertyName("tokens_per_rtt")] public double TokensPerRtt { get; init; }
    [JsonPropertyName("round_p50_ms")] public double RoundP50Ms { get; init; }
    [JsonPropertyName("acceptance")] public double Acceptance { get; init; }
    [JsonPropertyName("text_matches_generate")] public bool TextMatchesGenerate { get; init; }

    public static WanRowA Of(string pair, int oneWayMs, string shape, WanCellOutcome outcome, IReadOnlyList<int> reference)
    {
        var r = outcome.Report;
        var rate = r?.TokensPerSecond ?? 0;
        return new WanRowA
        {
            Pair = pair,
            OneWayMs = oneWayMs,
            Shape = shape,
            Status = outcome.Status,
            Tokens = outcome.Committed,
            Rounds = r?.Rounds ?? 0,
            TokensPerSecond = Math.Round(rate, 2),
            TokensPerRound = Math.Round(r?.TokensPerRound ?? 0, 3),
            TokensPerRtt = Math.Round(rate * 2 * oneWayMs / 1000, 3),
            RoundP50Ms = r is { RoundMillis.Count: > 0 } ? Math.Round(Percentiles.Of(r.RoundMillis, 0.5), 2) : 0,
            Acceptance = Math.Round(r?.AcceptanceRate ?? 0, 4),
            TextMatchesGenerate = r is not null && r.Tokens.SequenceEqual(reference),
        };
    }
}

/// <summary>One Table B cell: one vocabulary, one link, one mode; the real system and the simulator's prediction.</summary>
internal sealed record WanRowB
{
    [JsonPropertyName("vocab")] public int Vocab { get; init; }
    [JsonPropertyName("link")] public required string Link { get; init; }
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("status")] public required string Status { get; init; }
    [JsonPropertyName("error")] public string? Error { get; init; }
    [JsonPropertyName("tokens")] public int Tokens { get; init; }
    [JsonPropertyName("elapsed_s")] public double ElapsedSeconds { get; init; }
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("round_p50_ms")] public double RoundP50Ms { get; init; }
    [JsonPropertyName("round_p95_ms")] public double RoundP95Ms { get; init; }

    /// <summary>Message payload bytes per committed token (the device's count); for a cut cell, the link's bytes (frames included) per token committed.</summary>
    [JsonPropertyName("up_bytes_per_token")] public double UpBytesPerToken { get; init; }
    [JsonPropertyName("down_bytes_per_token")] public double DownBytesPerToken { get; init; }
    [JsonPropertyName("link_bytes_up")] public long LinkBytesUp { get; init; }
    [JsonPropertyName("link_bytes_down")] public long LinkBytesDown { get; init; }
    [JsonPropertyName("levels")] public IReadOnlyList<string> Levels { get; init; } = [];

    [JsonPropertyName("tokens_per_round")] public double TokensPerRound { get; init; }

    /// <summary>The most drafts any round sent (a step-down shows in <see cref="Levels"/>).</summary>
    [JsonPropertyName("gamma_max")] public int GammaMax { get; init; }
    [JsonPropertyName("loopback_tokens_per_s")] public double LoopbackTokensPerSecond { get; init; }
    [JsonPropertyName("sim_tokens_per_s")] public double? SimTokensPerSecond { get; init; }
    [JsonPropertyName("sim_round_ms")] public double? SimRoundMs { get; init; }
    [JsonPropertyName("sim_up_bytes_per_token")] public double? SimUpBytesPerToken { get; init; }
    [JsonPropertyName("sim_down_bytes_per_token")] public double? SimDownBytesPerToken { get; init; }

    public static WanRowB Of(int vocab, string link, string mode, WanCellOutcome real, WanCellOutcome loopback, SimResult? sim)
    {
        var r = real.Report;
        var tokens = Math.Max(1, real.Committed);
        return new WanRowB
        {
            Vocab = vocab,
            Link = link,
            Mode = mode,
            Status = real.Status,
            Error = real.Error,
            Tokens = real.Committed,
            ElapsedSeconds = Math.Round(real.Elapsed.TotalSeconds, 2),
            TokensPerSecond = Math.Round(r?.TokensPerSecond ?? real.Committed / Math.Max(1e-9, real.Elapsed.TotalSeconds), 2),
            RoundP50Ms = r is { RoundMillis.Count: > 0 } ? Math.Round(Percentiles.Of(r.RoundMillis, 0.5), 1) : 0,
            RoundP95Ms = r is { RoundMillis.Count: > 0 } ? Math.Round(Percentiles.Of(r.RoundMillis, 0.95), 1) : 0,
            UpBytesPerToken = Math.Round(r?.UplinkBytesPerToken ?? (double)real.LinkBytesUp / tokens, 1),
            DownBytesPerToken = Math.Round(r?.DownlinkBytesPerToken ?? (double)real.LinkBytesDown / tokens, 1),
            LinkBytesUp = real.LinkBytesUp,
            LinkBytesDown = real.LinkBytesDown,
            Levels = real.Levels,
            TokensPerRound = Math.Round(r?.TokensPerRound ?? 0, 2),
            GammaMax = r is { DraftedPerRound.Count: > 0 } ? r.DraftedPerRound.Max() : 0,
            LoopbackTokensPerSecond = Math.Round(loopback.Report?.TokensPerSecond ?? 0, 2),
            SimTokensPerSecond = sim is null ? null : Math.Round(sim.TokensPerSecond, 2),
            SimRoundMs = sim is null || sim.TokensPerSecond <= 0 ? null : Math.Round(1000 * sim.TokensPerRound / sim.TokensPerSecond, 1),
            SimUpBytesPerToken = sim is null ? null : Math.Round(sim.UplinkBytesPerToken, 1),
            SimDownBytesPerToken = sim is null ? null : Math.Round(sim.DownlinkBytesPerToken, 1),
        };
    }
}

/// <summary>The simulator's prediction for a Table B cell, calibrated on the loopback run of the same cell.</summary>
internal static class WanPrediction
{
    /// <summary>Null when the loopback run did not finish (nothing to calibrate from).</summary>
    public static SimResult? Simulate(WanCellOutcome loopback, WanLink link, double lateMs, int vocab, int promptTokens, CancellationToken ct)
    {
        if (loopback.Report is not { Rounds: > 0 } run)
        {
            return null;
        }

        var calibration = Calibrator.FromRun(CalibrationWriter.Facts([run], "bench wan", vocab, promptTokens));
        var scenario = Calibrator.ToScenario(calibration) with
        {
            RequestsPerDevice = 20,

            // The link as the emulator delivered it: its configured delay plus its own measured lateness (as sim --validate).
            Link = new SimLink { RttMs = (2 * link.OneWayMs) + lateMs, UpMbps = link.UpBytesPerSecond * 8 / 1e6, DownMbps = link.DownBytesPerSecond * 8 / 1e6 },
        };
        return Simulator.Run(scenario, ct);
    }
}

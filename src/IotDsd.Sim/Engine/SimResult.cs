using System.Text.Json.Serialization;

namespace IotDsd.Sim.Engine;

/// <summary>What a simulation measured (the same quantities a real run reports, docs/protocol.md §7).</summary>
public sealed record SimResult
{
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("devices")] public int Devices { get; init; }
    [JsonPropertyName("rtt_ms")] public double RttMs { get; init; }
    [JsonPropertyName("up_mbps")] public double UpMbps { get; init; }
    [JsonPropertyName("down_mbps")] public double DownMbps { get; init; }
    [JsonPropertyName("gamma")] public int Gamma { get; init; }
    [JsonPropertyName("vocab")] public int Vocab { get; init; }
    [JsonPropertyName("tokens")] public long Tokens { get; init; }
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("requests")] public long Requests { get; init; }

    /// <summary>Per device: generated tokens over the time its requests took (what one device sees).</summary>
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }

    [JsonPropertyName("time_per_token_ms")] public double TimePerTokenMs { get; init; }

    /// <summary>Whole fleet: tokens over simulated time (the verifiers' capacity when they are saturated).</summary>
    [JsonPropertyName("fleet_tokens_per_s")] public double FleetTokensPerSecond { get; init; }

    [JsonPropertyName("time_to_first_token_ms")] public double TimeToFirstTokenMs { get; init; }
    [JsonPropertyName("acceptance_rate")] public double AcceptanceRate { get; init; }
    [JsonPropertyName("tokens_per_round")] public double TokensPerRound { get; init; }
    [JsonPropertyName("mean_gamma")] public double MeanGamma { get; init; }
    [JsonPropertyName("mean_batch")] public double MeanBatch { get; init; }
    [JsonPropertyName("verifier_utilisation")] public double VerifierUtilisation { get; init; }
    [JsonPropertyName("uplink_bytes_per_token")] public double UplinkBytesPerToken { get; init; }
    [JsonPropertyName("downlink_bytes_per_token")] public double DownlinkBytesPerToken { get; init; }
    [JsonPropertyName("uplink_wire_bytes_per_token")] public double UplinkWireBytesPerToken { get; init; }
    [JsonPropertyName("downlink_wire_bytes_per_token")] public double DownlinkWireBytesPerToken { get; init; }
    [JsonPropertyName("rsr_followups")] public long FollowUps { get; init; }
    [JsonPropertyName("pipeline_hits")] public long PipelineHits { get; init; }
    [JsonPropertyName("simulated_s")] public double SimulatedSeconds { get; init; }
    [JsonPropertyName("events")] public long Events { get; init; }
    [JsonPropertyName("wall_ms")] public double WallMs { get; init; }

    /// <summary>Total bytes per token, payload, both directions.</summary>
    [JsonIgnore] public double BytesPerToken => UplinkBytesPerToken + DownlinkBytesPerToken;
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Sim.Calibration;

/// <summary>
/// What a real run measured, in the form the simulator takes (<c>--calibration-out</c> writes it, <c>iotdsd sim
/// --calibration</c> reads it): draft and verify times, acceptance by position, the broker's overhead per round,
/// framing per message, and the run's own tokens/s and bytes/token for comparison.
/// </summary>
public sealed record Calibration
{
    public const int FormatVersion = 1;

    [JsonPropertyName("format")] public int Format { get; init; } = FormatVersion;
    [JsonPropertyName("source")] public string Source { get; init; } = "";
    [JsonPropertyName("mode")] public string Mode { get; init; } = "rsr";
    [JsonPropertyName("gamma")] public int Gamma { get; init; }
    [JsonPropertyName("vocab")] public int Vocab { get; init; }
    [JsonPropertyName("prompt_tokens")] public int PromptTokens { get; init; }
    [JsonPropertyName("tokens")] public int Tokens { get; init; }
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("session_id_length")] public int SessionIdLength { get; init; }
    [JsonPropertyName("typical_token_id")] public int TypicalTokenId { get; init; }
    [JsonPropertyName("draft_ms_per_token")] public double DraftMsPerToken { get; init; }
    [JsonPropertyName("verify_ms")] public double VerifyMs { get; init; }
    [JsonPropertyName("mean_batch")] public double MeanBatch { get; init; }
    [JsonPropertyName("acceptance_by_position")] public IReadOnlyList<double> AcceptanceByPosition { get; init; } = [];

    /// <summary>Per round: what the round took beyond drafting, verifying and the link's own round trip.</summary>
    [JsonPropertyName("broker_overhead_ms")] public double BrokerOverheadMs { get; init; }

    /// <summary>The round-trip time of the link the measured run used (0 on loopback).</summary>
    [JsonPropertyName("link_rtt_ms")] public double LinkRttMs { get; init; }

    [JsonPropertyName("uplink_framing_bytes")] public int UplinkFramingBytes { get; init; }
    [JsonPropertyName("downlink_framing_bytes")] public int DownlinkFramingBytes { get; init; }
    [JsonPropertyName("rsr_proposals")] public double RsrProposals { get; init; }
    [JsonPropertyName("rsr_followup_rate")] public double RsrFollowUpRate { get; init; }
    [JsonPropertyName("measured")] public MeasuredFigures Measured { get; init; } = new();

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads a calibration file; throws <see cref="FormatException"/> with the reason for anything unusable.</summary>
    public static Calibration Load(string path)
    {
        var text = Scenarios.ScenarioFile.ReadText(path, "calibration");
        Calibration? calibration;
        try
        {
            calibration = JsonSerializer.Deserialize<Calibration>(text, Json);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"calibration file {path} is not valid: {ex.Message}");
        }

        if (calibration is null || calibration.Format != FormatVersion)
        {
            throw new FormatException($"calibration file {path} has format {calibration?.Format}, expected {FormatVersion}");
        }

        if (calibration.Gamma < 1 || calibration.Vocab < 2 || calibration.AcceptanceByPosition.Count == 0 || calibration.DraftMsPerToken < 0 || calibration.VerifyMs < 0)
        {
            throw new FormatException($"calibration file {path} lacks gamma, vocab, acceptance by position or times");
        }

        return calibration;
    }
}

/// <summary>The measured run's own figures, for side-by-side comparison.</summary>
public sealed record MeasuredFigures
{
    [JsonPropertyName("tokens_per_s")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("time_per_token_ms")] public double TimePerTokenMs { get; init; }
    [JsonPropertyName("uplink_bytes_per_token")] public double UplinkBytesPerToken { get; init; }
    [JsonPropertyName("downlink_bytes_per_token")] public double DownlinkBytesPerToken { get; init; }
}

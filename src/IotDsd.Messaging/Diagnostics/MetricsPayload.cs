using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>
/// The periodic, retained metrics of a device or verifier on <c>iotdsd/v1/{devices|verifiers}/{id}/metrics</c>.
/// Plain JSON so that any MQTT client can read it. Fields that do not apply to a role are null.
/// </summary>
public sealed record MetricsPayload
{
    [JsonPropertyName("role")] public required string Role { get; init; }
    [JsonPropertyName("id")] public required string Id { get; init; }
    [JsonPropertyName("version")] public string Version { get; init; } = Presence.PresencePayload.ThisVersion;
    [JsonPropertyName("protocol")] public int Protocol { get; init; } = Contracts.Wire.WireCodec.ProtocolVersion;
    [JsonPropertyName("runtime")] public string Runtime { get; init; } = Environment.Version.ToString();
    [JsonPropertyName("model")] public string? Model { get; init; }

    /// <summary>When the snapshot was taken, Unix milliseconds.</summary>
    [JsonPropertyName("ts_ms")] public long TimestampMs { get; init; }
    [JsonPropertyName("uptime_s")] public double UptimeSeconds { get; init; }

    /// <summary>From process start to the first MQTT connect (connected, subscribed, birth published).</summary>
    [JsonPropertyName("startup_ms")] public double? StartupMs { get; init; }

    /// <summary>Whether the role's own MQTT connection is up, and how many times it has connected.</summary>
    [JsonPropertyName("connected")] public bool Connected { get; init; }
    [JsonPropertyName("connections")] public long Connections { get; init; }

    /// <summary>Rung of the degradation ladder (docs/protocol.md §5): <c>normal</c> unless the link forced a lower one.</summary>
    [JsonPropertyName("degradation")] public string Degradation { get; init; } = "normal";

    /// <summary>Accepted drafts over drafted, over the recent rounds.</summary>
    [JsonPropertyName("acceptance")] public double? Acceptance { get; init; }
    [JsonPropertyName("tokens_per_s")] public double? TokensPerSecond { get; init; }

    /// <summary>Network round trip as the device sees it: round time less drafting and verification.</summary>
    [JsonPropertyName("rtt_ms")] public double? RttMs { get; init; }
    [JsonPropertyName("gamma")] public int? Gamma { get; init; }
    [JsonPropertyName("queue_depth")] public int QueueDepth { get; init; }
    [JsonPropertyName("sessions")] public int Sessions { get; init; }
    [JsonPropertyName("rounds")] public long Rounds { get; init; }
    [JsonPropertyName("tokens")] public long Tokens { get; init; }

    /// <summary>Error counts by reason since start.</summary>
    [JsonPropertyName("errors")] public IReadOnlyDictionary<string, long> Errors { get; init; } = new Dictionary<string, long>();

    /// <summary>Role-specific figures (the verifier's batch sizes, the device's generations).</summary>
    [JsonPropertyName("extra")] public IReadOnlyDictionary<string, double> Extra { get; init; } = new Dictionary<string, double>();

    /// <summary>Key in <see cref="Errors"/> of the publishes the broker refused (an ACL that denies the topic, typically).</summary>
    public const string PublishRefusedKey = "publish_refused";

    /// <summary>This snapshot with <paramref name="count"/> more refused publishes under <see cref="PublishRefusedKey"/>.</summary>
    public MetricsPayload WithPublishRefusals(long count)
    {
        if (count <= 0)
        {
            return this;
        }

        var errors = new Dictionary<string, long>(Errors, StringComparer.Ordinal);
        errors[PublishRefusedKey] = errors.GetValueOrDefault(PublishRefusedKey) + count;
        return this with { Errors = errors };
    }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this);

    /// <summary>Parses a metrics payload; null if it is not one.</summary>
    public static MetricsPayload? TryParse(byte[]? json)
    {
        if (json is null || json.Length is 0 or > 64 * 1024)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<MetricsPayload>(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

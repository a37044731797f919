using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>A diagnostic command sent to <c>.../cmd</c> with an MQTT 5 response topic and correlation data.</summary>
public sealed record DiagnosticRequest
{
    /// <summary>The commands a device or verifier answers.</summary>
    public static readonly string[] Commands = ["ping", "config", "rebirth"];

    [JsonPropertyName("command")] public string Command { get; init; } = "";

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this);

    public static DiagnosticRequest? TryParse(byte[]? json)
    {
        if (json is null || json.Length is 0 or > 4096)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<DiagnosticRequest>(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>The answer to a <see cref="DiagnosticRequest"/>.</summary>
public sealed record DiagnosticReply
{
    [JsonPropertyName("ok")] public bool Ok { get; init; }
    [JsonPropertyName("command")] public string Command { get; init; } = "";
    [JsonPropertyName("role")] public string Role { get; init; } = "";
    [JsonPropertyName("id")] public string Id { get; init; } = "";
    [JsonPropertyName("version")] public string Version { get; init; } = Presence.PresencePayload.ThisVersion;
    [JsonPropertyName("uptime_s")] public double UptimeSeconds { get; init; }
    [JsonPropertyName("connected")] public bool Connected { get; init; }
    [JsonPropertyName("connections")] public long Connections { get; init; }
    /// <summary>Publishes the broker refused since start, over the role's and the diagnostics connections.</summary>
    [JsonPropertyName("publish_refused")] public long PublishRefused { get; init; }
    [JsonPropertyName("config")] public IReadOnlyList<ConfigEntry>? Config { get; init; }
    [JsonPropertyName("error")] public string? Error { get; init; }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this);

    public static DiagnosticReply? TryParse(byte[]? json)
    {
        if (json is null || json.Length == 0)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<DiagnosticReply>(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

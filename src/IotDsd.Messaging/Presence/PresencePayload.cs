using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Messaging.Presence;

/// <summary>
/// The retained JSON status a device or verifier publishes: <c>online</c> with a per-connection counter on every
/// connect (in the spirit of Sparkplug B's bdSeq), <c>offline</c> as its last will. Plain JSON so that a field
/// engineer can read it with any MQTT client.
/// </summary>
public sealed record PresencePayload
{
    [JsonPropertyName("state")] public string State { get; init; } = "online";
    [JsonPropertyName("role")] public string Role { get; init; } = "";
    [JsonPropertyName("id")] public string Id { get; init; } = "";
    [JsonPropertyName("connection")] public long Connection { get; init; }

    /// <summary>Process starts (with a persisted <see cref="PresenceSequence"/>; absent otherwise): up on a restart, unchanged on a reconnect.</summary>
    [JsonPropertyName("boot")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? Boot { get; init; }
    [JsonPropertyName("version")] public string Version { get; init; } = ThisVersion;
    [JsonPropertyName("protocol")] public int Protocol { get; init; } = Contracts.Wire.WireCodec.ProtocolVersion;
    [JsonPropertyName("model")] public string? Model { get; init; }

    /// <summary>A verifier's load, refreshed while it changes; absent in devices' and older verifiers' statuses.</summary>
    [JsonPropertyName("load")] public VerifierLoad? Load { get; init; }

    /// <summary>This build's version.</summary>
    public static string ThisVersion { get; } = typeof(PresencePayload).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this);

    /// <summary>Parses a status payload; null if it is not one.</summary>
    public static PresencePayload? TryParse(byte[]? json)
    {
        if (json is null || json.Length == 0 || json.Length > 4096)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<PresencePayload>(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Presence settings for a role: birth per connection (with the current load, if any), retained offline will;
    /// with <paramref name="sequence"/>, connections are numbered across restarts and both messages carry the boot counter.</summary>
    public static Connections.PresenceSettings For(
        string topic, string role, string id, string? model = null, uint willDelaySeconds = 5, PresenceSequence? sequence = null, Func<VerifierLoad?>? load = null) =>
        new(
            topic,
            counter => new PresencePayload { Role = role, Id = id, Connection = counter, Model = model, Boot = sequence?.Boot, Load = load?.Invoke() }.ToJson(),
            new PresencePayload { State = "offline", Role = role, Id = id, Model = model, Boot = sequence?.Boot }.ToJson(),
            willDelaySeconds,
            sequence);
}

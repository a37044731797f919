using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;

namespace IotDsd.Edge.Hosting;

/// <summary>Settings of one draft worker (one device).</summary>
public sealed record EdgeOptions
{
    public string DeviceId { get; init; } = "device-1";
    public required BrokerAddress Broker { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }

    /// <summary>TLS to the broker; null for plain TCP (loopback development only).</summary>
    public MqttTlsSettings? Tls { get; init; }

    /// <summary>Pin a verifier; null discovers the live ones from their retained status and picks by rendezvous hash.</summary>
    public string? VerifierId { get; init; }

    /// <summary>How long to wait for a verifier to be online.</summary>
    public TimeSpan DiscoveryTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long one request waits for its reply before it is resent (same round: idempotent at the verifier).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Sends of one request before the generation fails closed.</summary>
    public int MaxAttempts { get; init; } = 6;

    public int MaxPayloadBytes { get; init; } = Contracts.Wire.WireCodec.DefaultMaxPayloadBytes;

    /// <summary>Returns null when valid, else a one-line reason naming the setting and the fix.</summary>
    public string? Validate()
    {
        if (!TopicScheme.IsValidId(DeviceId))
        {
            return $"device id '{DeviceId}' must be 1-64 characters of A-Z a-z 0-9 _ . -";
        }

        if (VerifierId is not null && !TopicScheme.IsValidId(VerifierId))
        {
            return $"verifier id '{VerifierId}' must be 1-64 characters of A-Z a-z 0-9 _ . -";
        }

        if (RequestTimeout <= TimeSpan.Zero || MaxAttempts < 1)
        {
            return "request timeout must be positive and max attempts at least 1";
        }

        return Tls?.Validate();
    }
}

namespace IotDsd.Messaging.Connections;

/// <summary>How a component connects to its broker.</summary>
public sealed record MqttSettings
{
    /// <summary>Socket and writer buffers. Dense distributions (128–600 KB) hit a latency cliff of hundreds of ms
    /// with the client's small defaults; 1 MiB keeps a 256 KB payload under a millisecond on loopback.</summary>
    public const int DefaultBufferBytes = 1 << 20;

    public required BrokerAddress Broker { get; init; }
    public required string ClientId { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }

    /// <summary>TLS to the broker; null for plain TCP (loopback development only).</summary>
    public MqttTlsSettings? Tls { get; init; }
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(15);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Bound on every publish; MQTTnet's own timeout does not cover publishes on a half-open link.</summary>
    public TimeSpan PublishTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Upper bound on a publish or reply timeout grown for a big payload on a slow uplink (base + bytes /
    /// measured bandwidth × safety factor); see <see cref="MqttConnection.TransferTimeout"/>.</summary>
    public TimeSpan TransferTimeoutCap { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Timeouts in a row (publishes, or replies the caller reports) after which the link is declared dead
    /// and reconnected.</summary>
    public int DeadAfterTimeouts { get; init; } = 2;

    /// <summary>Longest wait between reconnect attempts.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>MQTT 5 session expiry; 0 with <see cref="CleanStart"/> gives a throw-away session.</summary>
    public uint SessionExpirySeconds { get; init; }
    public bool CleanStart { get; init; } = true;
    public int BufferBytes { get; init; } = DefaultBufferBytes;

    /// <summary>Largest payload decoded; anything bigger is refused before decoding.</summary>
    public int MaxPayloadBytes { get; init; } = Contracts.Wire.WireCodec.DefaultMaxPayloadBytes;

    /// <summary>Capacity of the inbound queue between the MQTT receive loop and the worker.</summary>
    public int InboundQueue { get; init; } = 1024;

    /// <summary>Retained status topic, its birth payload factory and last-will payload; null for none.</summary>
    public PresenceSettings? Presence { get; init; }
}

/// <summary>Retained presence: a birth message on connect and a last will with a delay that rides out short flaps.
/// With a <see cref="Sequence"/>, births are numbered by it (kept across restarts) rather than by this process's connects.</summary>
public sealed record PresenceSettings(string Topic, Func<long, byte[]> Birth, byte[] Will, uint WillDelaySeconds = 5, Presence.PresenceSequence? Sequence = null);

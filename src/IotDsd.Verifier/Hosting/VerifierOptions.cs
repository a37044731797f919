using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Limits;

namespace IotDsd.Verifier.Hosting;

/// <summary>Settings of one verifier process.</summary>
public sealed record VerifierOptions
{
    public string VerifierId { get; init; } = "verifier-1";
    public required BrokerAddress Broker { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }

    /// <summary>Most rounds verified in one forward pass.</summary>
    public int MaxBatch { get; init; } = 32;

    /// <summary>Longest a round waits for others to join its batch.</summary>
    public TimeSpan BatchWait { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>Sessions unused this long are dropped (the device re-opens if it comes back).</summary>
    public TimeSpan SessionIdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Most sessions held at once; beyond it new sessions are refused as overloaded.</summary>
    public int MaxSessions { get; init; } = 10_000;

    /// <summary>Relative capacity of this verifier (2: twice a default one); devices place new sessions by load per unit of it.</summary>
    public double CapacityWeight { get; init; } = 1;

    /// <summary>Longest gap between status refreshes carrying the load while it changes (at once after a batch that shows a jump in sessions).</summary>
    public TimeSpan LoadRefresh { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long the broker waits after losing this verifier before publishing its retained offline will: devices
    /// fail over only then, and a verifier back within it loses nothing. Most of a failover's time; 0: at once.
    /// </summary>
    public TimeSpan WillDelay { get; init; } = TimeSpan.FromSeconds(5);

    public int MaxPayloadBytes { get; init; } = Contracts.Wire.WireCodec.DefaultMaxPayloadBytes;

    /// <summary>Per-device limits: draft and prompt length, session length and count, request rate, memory.</summary>
    public VerifierLimits Limits { get; init; } = new();

    /// <summary>TLS to the broker; null for plain TCP (loopback development only).</summary>
    public MqttTlsSettings? Tls { get; init; }

    /// <summary>Where the retained status's boot and connection counters are kept, so a restart continues them; null
    /// counts from 1 in every process.</summary>
    public string? StateDirectory { get; init; }

    /// <summary>The connection settings every server role of this process shares: broker, identity, TLS, limits.</summary>
    public MqttSettings Mqtt(string clientId) => new()
    {
        Broker = Broker,
        ClientId = clientId,
        Username = Username,
        Password = Password,
        Tls = Tls,
        MaxPayloadBytes = MaxPayloadBytes,
    };

    /// <summary>Returns null when valid, else a one-line reason naming the setting and the fix.</summary>
    public string? Validate()
    {
        if (!TopicScheme.IsValidId(VerifierId))
        {
            return $"verifier id '{VerifierId}' must be 1-64 characters of A-Z a-z 0-9 _ . -";
        }

        if (MaxBatch is < 1 or > 4096)
        {
            return $"max batch must be between 1 and 4096, got {MaxBatch}";
        }

        if (BatchWait < TimeSpan.Zero || BatchWait > TimeSpan.FromSeconds(1))
        {
            return $"batch wait must be between 0 and 1000 ms, got {BatchWait.TotalMilliseconds} ms";
        }

        if (MaxSessions < 1)
        {
            return $"max sessions must be positive, got {MaxSessions}";
        }

        if (!(CapacityWeight is > 0 and <= 1000))
        {
            return $"capacity weight must be above 0 and at most 1000, got {CapacityWeight}";
        }

        if (LoadRefresh < TimeSpan.FromMilliseconds(100) || LoadRefresh > TimeSpan.FromMinutes(1))
        {
            return $"load refresh must be between 100 ms and 60 s, got {LoadRefresh.TotalMilliseconds} ms";
        }

        if (WillDelay < TimeSpan.Zero || WillDelay > TimeSpan.FromHours(1) || WillDelay.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            return $"will delay must be whole seconds from 0 to 3600, got {WillDelay.TotalSeconds} s";
        }

        return Limits.Validate() ?? Tls?.Validate();
    }
}

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

    /// <summary>Directory where generations in progress are journaled after every round (one appended record), so a
    /// restarted process resumes them; null keeps nothing.</summary>
    public string? StateDirectory { get; init; }

    /// <summary>When the session journal in <see cref="StateDirectory"/> is fsynced and compacted.</summary>
    public Resilience.JournalPolicy StateJournal { get; init; } = new();

    /// <summary>A generation fails closed when no reply has come for this long (link down, no verifier).</summary>
    public TimeSpan GiveUpAfter { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Request timeouts in a row, with the link up all the while, after which an unpinned session leaves its verifier
    /// for another live one even though the verifier's retained status still says online: a verifier that died while
    /// the broker was away never has its last will sent. The move is lossless (the new verifier rebuilds the prefix).
    /// </summary>
    public int SilentVerifierTimeouts { get; init; } = 3;

    /// <summary>Longest wait between reconnect attempts (exponential backoff with jitter up to this).</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Base bound on one publish, grown with the payload over the measured uplink (up to
    /// <see cref="TransferTimeoutCap"/>); two timeouts in a row declare the link dead, except a big publish timing out
    /// under the cap, which marks the link slow rather than dead.</summary>
    public TimeSpan PublishTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Upper bound on a publish or reply timeout grown for a big payload on a slow uplink: each timeout is its
    /// base (<see cref="PublishTimeout"/>, <see cref="RequestTimeout"/>) plus the payload over the measured uplink
    /// bandwidth × 3. A round that cannot go up within it makes γ step down (docs/protocol.md, degradation ladder).</summary>
    public TimeSpan TransferTimeoutCap { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>MQTT session expiry: the broker keeps the device's subscriptions and queued replies this long.</summary>
    public uint SessionExpirySeconds { get; init; } = 3600;

    /// <summary>Let the degradation ladder lower γ in sampling modes too (exact in distribution, but a seed then no
    /// longer names one text under faults). Greedy always may.</summary>
    public bool AdaptGammaInSampling { get; init; }

    /// <summary>No effect: the shape controller is on by default (see <see cref="Sequential"/>); kept so that configurations
    /// and callers that turned the former adaptive γ on still work.</summary>
    public bool AdaptiveGamma { get; init; }

    /// <summary>One chain of the session's γ every round, one round in flight, no adaptation: the baseline. Otherwise the
    /// shape controller (docs/protocol.md §6) chooses each round's shape for committed tokens per second, from the
    /// session's γ up to <see cref="MaxDepth"/> — in greedy mode, and in sampling modes only with
    /// <see cref="AdaptGammaInSampling"/> (a timing-driven shape makes a seed name a distribution, not a text).</summary>
    public bool Sequential { get; init; }

    /// <summary>Deepest round the shape controller may choose (never below the session's γ, where it starts).</summary>
    public int MaxDepth { get; init; } = 16;

    /// <summary>Largest token tree the shape controller may send (0: chains only); the verifier refuses more than its own
    /// limit (<c>VerifierLimits.MaxTreeNodes</c>, 64 by default). Trees are offered in greedy and dsd (docs/protocol.md §14).</summary>
    public int MaxTreeNodes { get; init; } = 64;

    /// <summary>Greedy: rounds sent ahead of a pending verdict, each drafted on the predicted outcome of the one before
    /// (0 or 1; docs/protocol.md, pipelined rounds). Ignored in sampling modes and with <see cref="Sequential"/>.</summary>
    public int PipelineDepth { get; init; } = 1;

    /// <summary>Pipelined rounds start once the measured round trip outside the verifier reaches this (ms; 0: always). On a
    /// local link a round sent ahead saves almost nothing, and the extra requests count against the verifier's
    /// per-device request limit.</summary>
    public double PipelineMinRoundTripMs { get; init; } = 5;

    /// <summary>Pipelined rounds: outcomes of the pending round predicted, each with its own round sent ahead — "k drafts
    /// accepted, then the draft's best other token" for k = 0, 1, …, and always "all accepted, then the draft's next
    /// token". 0: one per possible k (γ + 1); 1: only "all accepted"; 2 (the default): also "the first draft rejected".
    /// More cost uplink bytes, draft time and messages, never text.</summary>
    public int PredictedOutcomes { get; init; } = 2;

    /// <summary>At the ladder's verifier-decoding rung, tokens the verifier decodes and streams down per request (never
    /// past max tokens); 0 sends γ = 0 rounds instead, one token per round trip.</summary>
    public int StreamTokens { get; init; } = 16;

    /// <summary>Hold the degradation ladder at this rung (failures and successes do not move it; a lost link still
    /// shows the offline rung); null lets it move. Below normal it changes γ, so sampling modes need
    /// <see cref="AdaptGammaInSampling"/>.</summary>
    public Resilience.DegradationLevel? PinnedLevel { get; init; }

    /// <summary>Draft every round in this shape (a token tree where the session offers trees, else a chain of its
    /// depth), never deeper than the γ the ladder and the link allow; null drafts chains of γ.</summary>
    public Core.Adaptive.RoundShape? Shape { get; init; }

    /// <summary>Draft-only tokens shown (flagged unverified) when the link goes down; 0 shows none.</summary>
    public int OfflineDraftTokens { get; init; } = 32;

    /// <summary>The device's connection settings: broker, identity, TLS, limits (its one client id).</summary>
    public MqttSettings Mqtt() => new()
    {
        Broker = Broker,
        ClientId = $"iotdsd-device-{DeviceId}",
        Username = Username,
        Password = Password,
        Tls = Tls,
        MaxPayloadBytes = MaxPayloadBytes,
    };

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

        if (StateJournal.Validate() is { } journal)
        {
            return journal;
        }

        if (MaxTreeNodes is < 0 or > 256)
        {
            return $"max tree nodes must be between 0 and 256, got {MaxTreeNodes}";
        }

        if (MaxDepth is < 1 or > 32)
        {
            return $"max depth must be between 1 and 32, got {MaxDepth}";
        }

        if (SilentVerifierTimeouts < 1)
        {
            return $"silent verifier timeouts must be at least 1, got {SilentVerifierTimeouts}";
        }

        if (RequestTimeout <= TimeSpan.Zero || MaxAttempts < 1)
        {
            return "request timeout must be positive and max attempts at least 1";
        }

        if (GiveUpAfter <= TimeSpan.Zero || ReconnectMaxDelay <= TimeSpan.Zero || PublishTimeout <= TimeSpan.Zero)
        {
            return "give-up time, reconnect delay and publish timeout must be positive";
        }

        if (TransferTimeoutCap < PublishTimeout || TransferTimeoutCap < RequestTimeout)
        {
            return $"transfer timeout cap ({TransferTimeoutCap.TotalMilliseconds} ms) must be at least the publish and request timeouts";
        }

        if (!(PipelineMinRoundTripMs >= 0))
        {
            return $"pipeline minimum round trip must be 0 ms or more, got {PipelineMinRoundTripMs}";
        }

        if (PredictedOutcomes is < 0 or > 65)
        {
            return $"predicted outcomes must be between 0 and 65, got {PredictedOutcomes}";
        }

        if (PipelineDepth is < 0 or > 1)
        {
            return $"pipeline depth must be 0 or 1, got {PipelineDepth}";
        }

        if (OfflineDraftTokens is < 0 or > 4096)
        {
            return $"offline draft tokens must be between 0 and 4096, got {OfflineDraftTokens}";
        }

        if (StreamTokens is < 0 or > 1024)
        {
            return $"stream tokens must be between 0 and 1024, got {StreamTokens}";
        }

        if (PinnedLevel is { } pinned && (pinned == Resilience.DegradationLevel.Offline || !Enum.IsDefined(pinned)))
        {
            return $"the ladder can be pinned at normal, reduced-gamma, gamma-1 or verifier-decoding, not {pinned}";
        }

        return Tls?.Validate();
    }
}

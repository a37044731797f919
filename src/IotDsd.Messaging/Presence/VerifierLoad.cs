using System.Text.Json.Serialization;

namespace IotDsd.Messaging.Presence;

/// <summary>
/// How loaded a verifier is, as its retained status carries it (the <c>load</c> object; statuses of older verifiers
/// lack it and count as idle). <see cref="Score"/> is what devices rank by: sessions held per unit of configured
/// capacity, inflated up to twice as the verifier's busy fraction nears 1, so a verifier that is slower for its session
/// count (heavier prompts, slower hardware) takes fewer new sessions without being told. The queue depth is shown but
/// not scored: it swings from one batch to the next, and a stale swing would herd devices onto another verifier.
/// </summary>
public sealed record VerifierLoad
{
    [JsonPropertyName("score")] public double Score { get; init; }
    [JsonPropertyName("sessions")] public int Sessions { get; init; }
    [JsonPropertyName("queue_depth")] public int QueueDepth { get; init; }
    [JsonPropertyName("batch_ms")] public double BatchMs { get; init; }
    [JsonPropertyName("utilisation")] public double Utilisation { get; init; }
    [JsonPropertyName("weight")] public double Weight { get; init; } = 1;
    [JsonPropertyName("max_sessions")] public int MaxSessions { get; init; }

    /// <summary>Bytes the verifier accounts per cached token, from its target model's KV shape; null from older verifiers.</summary>
    [JsonPropertyName("cache_bytes_per_token")] public long? CacheBytesPerToken { get; init; }

    /// <summary>Verifier memory its sessions are accounted to hold now (cache, rows, overhead); null from older verifiers.</summary>
    [JsonPropertyName("memory_bytes")] public long? MemoryBytes { get; init; }

    /// <summary>The load of a verifier holding <paramref name="sessions"/>, busy <paramref name="utilisation"/> of the time.</summary>
    public static VerifierLoad Of(int sessions, int queueDepth, double batchMs, double utilisation, double weight, int maxSessions)
    {
        var busy = double.IsFinite(utilisation) ? Math.Clamp(utilisation, 0, 1) : 0;
        var w = double.IsFinite(weight) && weight > 0 ? weight : 1;
        return new VerifierLoad
        {
            Score = Math.Round(Math.Max(0, sessions) * (1 + busy) / w, 3),
            Sessions = sessions,
            QueueDepth = queueDepth,
            BatchMs = Math.Round(batchMs, 3),
            Utilisation = Math.Round(busy, 3),
            Weight = w,
            MaxSessions = maxSessions,
        };
    }

    /// <summary>The score a device ranks by: finite and non-negative whatever arrived.</summary>
    [JsonIgnore] public double Rank => double.IsFinite(Score) && Score > 0 ? Score : 0;

    /// <summary>True when the verifier holds its maximum of sessions (it would refuse a new one).</summary>
    [JsonIgnore] public bool Full => MaxSessions > 0 && Sessions >= MaxSessions;
}

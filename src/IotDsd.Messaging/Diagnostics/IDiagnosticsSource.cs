namespace IotDsd.Messaging.Diagnostics;

/// <summary>What a role (device or verifier) exposes to field diagnostics.</summary>
public interface IDiagnosticsSource
{
    /// <summary><c>device</c> or <c>verifier</c>.</summary>
    string Role { get; }

    /// <summary>The device or verifier id (a topic level).</summary>
    string Id { get; }

    /// <summary>The figures published on the metrics topic now.</summary>
    MetricsPayload Snapshot();

    /// <summary>Every setting in force and where it came from; values marked secret are redacted before leaving the process.</summary>
    IReadOnlyList<ConfigEntry> EffectiveConfiguration();

    /// <summary>Publishes the role connection's retained birth message again.</summary>
    Task RepublishBirthAsync(CancellationToken ct);
}

/// <summary>One effective setting: its key, value, where the value came from, and whether it is a secret.</summary>
public sealed record ConfigEntry(
    [property: System.Text.Json.Serialization.JsonPropertyName("key")] string Key,
    [property: System.Text.Json.Serialization.JsonPropertyName("value")] string? Value,
    [property: System.Text.Json.Serialization.JsonPropertyName("source")] string Source,
    [property: System.Text.Json.Serialization.JsonPropertyName("secret")] bool Secret = false)
{
    /// <summary>Placeholder for a secret that is set.</summary>
    public const string Redacted = "***";

    /// <summary>This entry with a secret value replaced by <see cref="Redacted"/>. Keys that name a password or secret
    /// are treated as secrets even when not marked.</summary>
    public ConfigEntry Redact()
    {
        var leaf = Key[(Key.LastIndexOf(':') + 1)..];
        var secret = Secret
            || leaf.Contains("password", StringComparison.OrdinalIgnoreCase)
            || leaf.Contains("secret", StringComparison.OrdinalIgnoreCase)
            || leaf.Contains("passphrase", StringComparison.OrdinalIgnoreCase);
        return secret && !string.IsNullOrEmpty(Value) ? this with { Value = Redacted, Secret = true } : this;
    }
}

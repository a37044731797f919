namespace IotDsd.Verifier.Limits;

/// <summary>
/// What one device may ask of a verifier. Every limit refuses with an <c>ErrorReply</c> that names the limit and its
/// value, and counts the refusal under its <see cref="LimitKind"/>. The defaults leave an honest device on a fast
/// link untouched and stop a flooding or buggy one long before it can hurt others.
/// </summary>
public sealed record VerifierLimits
{
    /// <summary>Largest draft length a session may declare (<c>OpenSession.MaxGamma</c>).</summary>
    public int MaxGamma { get; init; } = 32;

    /// <summary>Most draft nodes a token-tree round may carry; 0: chains only. A session that asks for more
    /// (<c>OpenSession.MaxTreeNodes</c>) is granted this many (<c>SessionOpened.MaxTreeNodes</c>).</summary>
    public int MaxTreeNodes { get; init; } = 64;

    /// <summary>Most not-yet-sent committed tokens in one round: bounds the prompt, which travels in the first round.</summary>
    public int MaxPromptTokens { get; init; } = 8192;

    /// <summary>Most tokens one session's cache may hold (committed prefix plus the drafted tokens of a round).</summary>
    public int MaxSessionTokens { get; init; } = 32_768;

    /// <summary>Sessions one device may hold open at once.</summary>
    public int MaxSessionsPerDevice { get; init; } = 16;

    /// <summary>Sustained requests per second one device may send (token bucket refill rate).</summary>
    public double RequestsPerSecond { get; init; } = 2000;

    /// <summary>Requests a device may send in a burst above the sustained rate (token bucket size).</summary>
    public int RequestBurst { get; init; } = 2000;

    /// <summary>Bound on the verifier memory one device's sessions may account for.</summary>
    public long MaxDeviceMemoryBytes { get; init; } = 256L << 20;

    /// <summary>Cache bytes per held token, for the memory account; null takes it from the loaded target model
    /// (a transformer's KV cache: layers × 2 × kv heads × head dim × element size), or 1 KiB where the model does not say.</summary>
    public int? BytesPerCachedToken { get; init; }

    /// <summary>The verifier's global KV-cache budget in bytes (<c>Sessions.KvBudget</c>); null: half the available memory.</summary>
    public long? KvBudgetBytes { get; init; }

    /// <summary>Sessions idle this long may be evicted when the KV budget is full.</summary>
    public TimeSpan KvEvictIdle { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Error replies (and warnings logged) per second for one device; refusals beyond it are only counted, so a
    /// flood of bad requests costs the verifier no publishes.</summary>
    public double ErrorRepliesPerSecond { get; init; } = 10;

    /// <summary>Error replies one device may get in a burst.</summary>
    public int ErrorReplyBurst { get; init; } = 10;

    /// <summary>Returns null when valid, else a one-line reason naming the setting.</summary>
    public string? Validate()
    {
        if (MaxGamma is < 1 or > 64)
        {
            return $"limit max gamma must be between 1 and 64, got {MaxGamma}";
        }

        if (MaxTreeNodes is < 0 or > 256)
        {
            return $"limit max tree nodes must be between 0 (chains only) and 256, got {MaxTreeNodes}";
        }

        if (MaxPromptTokens < 1 || MaxSessionTokens < 2 || MaxPromptTokens >= MaxSessionTokens)
        {
            return $"limits need 1 <= max prompt tokens < max session tokens, got {MaxPromptTokens} and {MaxSessionTokens}";
        }

        if (MaxSessionsPerDevice < 1)
        {
            return $"limit max sessions per device must be positive, got {MaxSessionsPerDevice}";
        }

        if (!(RequestsPerSecond > 0) || RequestBurst < 1)
        {
            return $"limit requests per second and burst must be positive, got {RequestsPerSecond} and {RequestBurst}";
        }

        if (MaxDeviceMemoryBytes < 1 << 20 || BytesPerCachedToken is < 1)
        {
            return $"limit max device memory must be at least 1 MiB and bytes per cached token positive, got {MaxDeviceMemoryBytes} and {BytesPerCachedToken}";
        }

        return !(ErrorRepliesPerSecond > 0) || ErrorReplyBurst < 1
            ? $"limit error replies per second and burst must be positive, got {ErrorRepliesPerSecond} and {ErrorReplyBurst}"
            : null;
    }
}

/// <summary>Which limit refused a request.</summary>
public enum LimitKind
{
    PayloadSize,
    Gamma,
    PromptLength,
    SessionTokens,
    SessionsPerDevice,
    RequestRate,
    DeviceMemory,
}

/// <summary>Thread-safe refusal counts per limit.</summary>
public sealed class LimitCounters
{
    private readonly long[] _counts = new long[Enum.GetValues<LimitKind>().Length];

    public long this[LimitKind kind] => Interlocked.Read(ref _counts[(int)kind]);

    public long Total => Enum.GetValues<LimitKind>().Sum(k => this[k]);

    public void Increment(LimitKind kind) => Interlocked.Increment(ref _counts[(int)kind]);

    /// <summary>Non-zero counts by name.</summary>
    public IReadOnlyDictionary<string, long> Snapshot() =>
        Enum.GetValues<LimitKind>().Where(k => this[k] > 0).ToDictionary(k => k.ToString(), k => this[k]);
}

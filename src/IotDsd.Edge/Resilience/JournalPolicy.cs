namespace IotDsd.Edge.Resilience;

/// <summary>
/// When the session journal (<see cref="SessionStore"/>) forces its bytes to storage, and when it compacts.
/// <para>
/// Every committed round appends one record to the page cache at once (a killed process loses nothing). The file is
/// fsynced when a session's journal is created or compacted (a fresh snapshot, written to a temporary file, fsynced,
/// renamed over the old one, and the directory fsynced), and after <see cref="SyncEveryRounds"/> appended rounds or
/// once <see cref="SyncInterval"/> has passed since the last fsync, whichever comes first (checked at each append).
/// A power cut can therefore lose the rounds appended since the last fsync: at most <see cref="SyncEveryRounds"/> − 1
/// rounds, or those of the last <see cref="SyncInterval"/>, plus whatever the kernel had not yet written back. The
/// device then resumes from an older committed prefix under a new epoch; the verifier rebuilds the session from that
/// prefix, and the rounds are decoded again with the same per-round randomness, so the text is the same: nothing
/// committed is lost, only the work of those rounds is repeated.
/// </para>
/// </summary>
public sealed record JournalPolicy
{
    /// <summary>Appended rounds after which the journal is fsynced; 1 fsyncs every round.</summary>
    public int SyncEveryRounds { get; init; } = 16;

    /// <summary>Time after the last fsync at which the next append fsyncs, however few rounds it has seen.</summary>
    public TimeSpan SyncInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The journal is compacted into a fresh snapshot once the rounds appended after its snapshot exceed both this
    /// many bytes and the snapshot's own size: the file then never exceeds about twice the state plus this, and each
    /// byte of state is rewritten a bounded number of times on average.
    /// </summary>
    public long CompactAfterBytes { get; init; } = 64 * 1024;

    /// <summary>Returns null when valid, else a one-line reason naming the setting.</summary>
    public string? Validate() =>
        SyncEveryRounds < 1 ? $"state sync rounds must be at least 1, got {SyncEveryRounds}"
        : SyncInterval < TimeSpan.Zero ? $"state sync interval must not be negative, got {SyncInterval}"
        : CompactAfterBytes < 1 ? $"journal compaction bound must be at least 1 byte, got {CompactAfterBytes}"
        : null;
}

using IotDsd.Contracts.Messages;

namespace IotDsd.Edge.Drafting;

/// <summary>What one generation did, for the summary line and the JSON report (docs/protocol.md §7).</summary>
public sealed record GenerationReport
{
    public required string SessionId { get; init; }
    public required DecodingMode Mode { get; init; }
    public required int Gamma { get; init; }
    public required ulong Seed { get; init; }
    public required IReadOnlyList<int> Tokens { get; init; }

    /// <summary>Why the generation ended: max tokens, or an end-of-sequence token (the last of <see cref="Tokens"/>).</summary>
    public Core.Sessions.StopReason StopReason { get; init; }
    public required string VerifierId { get; init; }
    public long Rounds { get; init; }
    public long Drafted { get; init; }
    public long Accepted { get; init; }
    public long FollowUps { get; init; }
    public long Retries { get; init; }
    public long Reopens { get; init; }

    /// <summary>Rounds sent ahead of their predecessor's verdict (pipelined), and those whose predicted prefix came true
    /// (the rest were drafted again on the real outcome).</summary>
    public long RoundsAhead { get; init; }

    public long RoundsAheadHeld { get; init; }
    public TimeSpan Elapsed { get; init; }
    public TimeSpan TimeToFirstToken { get; init; }
    public long UplinkPayloadBytes { get; init; }
    public long UplinkWireBytes { get; init; }
    public long DownlinkPayloadBytes { get; init; }
    public long DownlinkWireBytes { get; init; }
    /// <summary>Per round: draft + request + verify + reply, as the device saw it.</summary>
    public IReadOnlyList<double> RoundMillis { get; init; } = [];

    /// <summary>Per round: time spent drafting on the device.</summary>
    public IReadOnlyList<double> DraftMillis { get; init; } = [];

    /// <summary>Per round: the verifier's forward pass and decision, as it reported.</summary>
    public IReadOnlyList<double> VerifyMillis { get; init; } = [];
    public double MeanBatch { get; init; }

    /// <summary>The largest forward pass (rounds or streams verified together) any of this generation's replies reported.</summary>
    public int MaxBatch { get; init; }

    /// <summary>Bytes the session journal wrote (state directory only; 0 without one).</summary>
    public long StateBytesWritten { get; init; }

    /// <summary>fsync calls the session journal made.</summary>
    public long StateSyncs { get; init; }

    /// <summary>Per round: drafts accepted, and drafts sent (acceptance by position, for calibration).</summary>
    public IReadOnlyList<int> AcceptedPerRound { get; init; } = [];

    public IReadOnlyList<int> DraftedPerRound { get; init; } = [];

    /// <summary>What faults cost this generation, and the degradation levels it went through.</summary>
    public FaultReport Faults { get; init; } = new();

    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    public double MeanAccepted => Rounds == 0 ? 0 : (double)Accepted / Rounds;
    public double TokensPerRound => Rounds == 0 ? 0 : (double)Tokens.Count / Rounds;
    public double TokensPerSecond => Elapsed.TotalSeconds <= 0 ? 0 : Tokens.Count / Elapsed.TotalSeconds;
    public double TimePerTokenMs => Tokens.Count == 0 ? 0 : Elapsed.TotalMilliseconds / Tokens.Count;
    public double UplinkBytesPerToken => Tokens.Count == 0 ? 0 : (double)UplinkPayloadBytes / Tokens.Count;
    public double DownlinkBytesPerToken => Tokens.Count == 0 ? 0 : (double)DownlinkPayloadBytes / Tokens.Count;
}

/// <summary>Faults one generation rode out (docs/protocol.md §5, §7).</summary>
public sealed record FaultReport
{
    /// <summary>Tokens restored from saved state at start (a restarted process).</summary>
    public int ResumedTokens { get; init; }
    public long LinkDrops { get; init; }

    /// <summary>Links declared dead after consecutive timeouts (half-open) and reconnected.</summary>
    public long DeadLinks { get; init; }

    /// <summary>Draft-only tokens shown flagged unverified while the link was down; never part of the text.</summary>
    public long UnverifiedTokensShown { get; init; }

    /// <summary>Per reconnect: link back → next committed round.</summary>
    public IReadOnlyList<double> RecoveryMillis { get; init; } = [];

    /// <summary>Per failover: last reply of the old verifier → first committed round on the new one.</summary>
    public IReadOnlyList<double> FailoverMillis { get; init; } = [];
    public long LevelTransitions { get; init; }

    /// <summary>Milliseconds spent at each degradation level, by name.</summary>
    public IReadOnlyDictionary<string, double> MillisAtLevel { get; init; } = new Dictionary<string, double>();

    /// <summary>True if any unverified (lossy) text was shown during the generation.</summary>
    public bool ShowedUnverified => UnverifiedTokensShown > 0;
}

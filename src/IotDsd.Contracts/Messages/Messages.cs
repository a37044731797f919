using MessagePack;

namespace IotDsd.Contracts.Messages;

// Every message is a [MessagePackObject] with integer keys. Fields are append-only: never renumber or reuse a key.
// The envelope (WireCodec) carries the protocol version and the message type in front of each body.

/// <summary>Sampling settings shared by both sides; P and Q are built with exactly these.</summary>
[MessagePackObject]
public sealed record SamplingSettings
{
    [Key(0)] public float Temperature { get; init; }
    [Key(1)] public int TopK { get; init; }
    [Key(2)] public float TopP { get; init; } = 1f;
}

/// <summary>Device → verifier: start (or restart) a session. The prefix itself travels in the first round's pending tokens.</summary>
[MessagePackObject]
public sealed record OpenSession
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public string DeviceId { get; init; } = "";
    [Key(2)] public int Epoch { get; init; }
    [Key(3)] public DecodingMode Mode { get; init; }
    [Key(4)] public SamplingSettings Sampling { get; init; } = new();
    [Key(5)] public ulong Seed { get; init; }
    [Key(6)] public int MaxTokens { get; init; }
    [Key(7)] public int VocabSize { get; init; }
    [Key(8)] public int MaxGamma { get; init; }

    /// <summary>Digest of the draft's vocabulary (its tokenizer's content); null when the draft does not know it.</summary>
    [Key(9)] public string? VocabularyDigest { get; init; }
    /// <summary>End-of-sequence ids: a generated one ends the session (null or empty: only max tokens does).</summary>
    [Key(10)] public int[]? StopTokens { get; init; }

    /// <summary>Most draft nodes a round may carry as a token tree; 0: chains only (at most <see cref="MaxGamma"/>).</summary>
    [Key(11)] public int MaxTreeNodes { get; init; }
}

/// <summary>Device → verifier: one speculative round.</summary>
[MessagePackObject]
public sealed record DraftRound
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public int Epoch { get; init; }
    [Key(2)] public long Round { get; init; }

    /// <summary>Committed length including <see cref="Pending"/>.</summary>
    [Key(3)] public int CommittedLength { get; init; }

    /// <summary>FNV-1a digest of the whole committed prefix including <see cref="Pending"/>.</summary>
    [Key(4)] public ulong PrefixDigest { get; init; }

    /// <summary>Committed tokens the verifier has not been sent yet (the prompt, then each round's next token).</summary>
    [Key(5)] public int[] Pending { get; init; } = [];

    /// <summary>Drafted tokens d_1..d_γ.</summary>
    [Key(6)] public int[] Draft { get; init; } = [];

    /// <summary><c>dssd</c>/<c>rsr</c>: Q_i(d_i) for each drafted token.</summary>
    [Key(7)] public float[]? DraftProbs { get; init; }

    /// <summary><c>dsd</c>: the full rows Q_1..Q_γ, little-endian fp32, γ·V values.</summary>
    [Key(8)] public byte[]? DraftDistributions { get; init; }

    /// <summary><c>rsr</c>: how many proposals to send on a rejection.</summary>
    [Key(9)] public int Proposals { get; init; }

    /// <summary>
    /// Verifier-side decoding (the ladder's lossless rung below γ = 1): with no drafts, the verifier decodes this many
    /// tokens after <see cref="CommittedLength"/> itself and streams them down as <see cref="TokenChunk"/>s; the last
    /// one is the next round's pending token. 0 is an ordinary speculative round. A resend of the same round (same
    /// epoch) resumes the stream from <see cref="CommittedLength"/>, which then counts the tokens already received.
    /// </summary>
    [Key(10)] public int Stream { get; init; }

    /// <summary>
    /// Token tree: the parent of each node of <see cref="Draft"/> (an earlier node's index, or −1 for a node that follows
    /// the last pending token). Null: <see cref="Draft"/> is a chain.
    /// </summary>
    [Key(11)] public int[]? TreeParents { get; init; }

    /// <summary>
    /// Pipelined round: sent before the verdict of round <see cref="AfterRound"/>, built on a predicted outcome of it.
    /// The verifier verifies it only when that round's real outcome gives exactly this round's prefix
    /// (<see cref="CommittedLength"/> and <see cref="PrefixDigest"/>); otherwise it answers
    /// <see cref="VerdictKind.ConditionUnmet"/>. 0: an ordinary round.
    /// </summary>
    [Key(12)] public long AfterRound { get; init; }
}

/// <summary>Device → verifier (<c>rsr</c>): every proposal was rejected; send <see cref="Proposals"/> more for the same round.</summary>
[MessagePackObject]
public sealed record MoreProposals
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public int Epoch { get; init; }
    [Key(2)] public long Round { get; init; }
    [Key(3)] public int Attempt { get; init; }
    [Key(4)] public int Proposals { get; init; }
}

/// <summary>Device → verifier: the generation is complete; the verifier may drop the session's cache.</summary>
[MessagePackObject]
public sealed record CloseSession
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public int Epoch { get; init; }
}

/// <summary>Verifier → device: the session is open.</summary>
[MessagePackObject]
public sealed record SessionOpened
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public int Epoch { get; init; }
    [Key(2)] public string VerifierId { get; init; } = "";
    [Key(3)] public string TargetModel { get; init; } = "";

    /// <summary>Token-tree nodes a round of this session may carry (0: chains only, as from a verifier without trees).</summary>
    [Key(4)] public int MaxTreeNodes { get; init; }

    /// <summary>The verifier understands <see cref="DraftRound.AfterRound"/> (false from a verifier without it: send nothing ahead).</summary>
    [Key(5)] public bool ConditionalRounds { get; init; }

    /// <summary>
    /// Sessions the verifier holds, this one included, when it opened it: the load a first round will share (0: not
    /// reported, as from a verifier without it).
    /// </summary>
    [Key(6)] public int Sessions { get; init; }

    /// <summary>The verifier's pass cost line when it opened the session, as in <see cref="Verdict.PassFixedMs"/> (0 and 0: none yet).</summary>
    [Key(7)] public float PassFixedMs { get; init; }

    /// <summary>The line's slope, ms per token fed, as in <see cref="Verdict.PassPerTokenMs"/>.</summary>
    [Key(8)] public float PassPerTokenMs { get; init; }
}

/// <summary>What follows the accepted drafts in a <see cref="Verdict"/>.</summary>
public enum VerdictKind : byte
{
    /// <summary>The next token is <see cref="Verdict.Token"/> (greedy, dsd, or every draft accepted).</summary>
    Token = 0,

    /// <summary><c>dssd</c>: the target row P_j in <see cref="Verdict.TargetDistribution"/>; the device samples the residual.</summary>
    TargetDistribution = 1,

    /// <summary><c>rsr</c>: proposals (t, P_j(t)) in <see cref="Verdict.ProposalTokens"/>/<see cref="Verdict.ProposalProbs"/>.</summary>
    Proposals = 2,

    /// <summary>
    /// A pipelined round whose predicted prefix did not come true: nothing was verified and nothing changes. The device
    /// sends the round again, built on the real outcome.
    /// </summary>
    ConditionUnmet = 3,
}

/// <summary>Verifier → device: the outcome of one round (or one <see cref="MoreProposals"/> attempt).</summary>
[MessagePackObject]
public sealed record Verdict
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public int Epoch { get; init; }
    [Key(2)] public long Round { get; init; }
    [Key(3)] public int Attempt { get; init; }
    [Key(4)] public int Accepted { get; init; }
    [Key(5)] public VerdictKind Kind { get; init; }
    [Key(6)] public int Token { get; init; }
    [Key(7)] public byte[]? TargetDistribution { get; init; }
    [Key(8)] public int[]? ProposalTokens { get; init; }
    [Key(9)] public float[]? ProposalProbs { get; init; }

    /// <summary>Sessions in the forward pass that verified this round.</summary>
    [Key(10)] public int BatchSize { get; init; }

    /// <summary>Rounds waiting at the verifier when this one was taken.</summary>
    [Key(11)] public int QueueDepth { get; init; }

    /// <summary>Time the verifier spent on the batch, microseconds.</summary>
    [Key(12)] public int VerifyMicros { get; init; }

    /// <summary>Token tree: the accepted path's node indices, root first (<see cref="Accepted"/> of them).</summary>
    [Key(13)] public int[]? AcceptedNodes { get; init; }

    /// <summary>Tokens the forward pass fed, all its sessions together (0: not reported): with <see cref="VerifyMicros"/>,
    /// what a device fits the verifier's pass cost in (docs/protocol.md §6).</summary>
    [Key(14)] public int PassTokens { get; init; }

    /// <summary>The verifier's pass cost line, fitted over its own passes: a fixed part per pass, ms (0 with
    /// <see cref="PassPerTokenMs"/> 0: not reported).</summary>
    [Key(15)] public float PassFixedMs { get; init; }

    /// <summary>The verifier's pass cost line: the part per token fed, ms.</summary>
    [Key(16)] public float PassPerTokenMs { get; init; }
}

/// <summary>Why a request was refused.</summary>
public enum ErrorCode : byte
{
    Malformed = 1,
    TooLarge = 2,
    UnsupportedVersion = 3,
    UnexpectedMessage = 4,
    WrongTopic = 5,
    UnknownSession = 6,
    PrefixMismatch = 7,
    InvalidRequest = 8,
    Overloaded = 9,
    Internal = 10,

    /// <summary>
    /// An open whose epoch the verifier has already seen superseded: the session is held, or was closed or dropped,
    /// at <see cref="ErrorReply.Epoch"/>. A late duplicate gets this too and nobody waits for it; a device that reuses
    /// a session id (a new generation, a restart without saved state) reopens above that epoch.
    /// </summary>
    EpochSuperseded = 11,
}

/// <summary>Verifier → device: a request was refused. Sent only where a reply makes sense.</summary>
[MessagePackObject]
public sealed record ErrorReply
{
    [Key(0)] public ErrorCode Code { get; init; }
    [Key(1)] public string Message { get; init; } = "";
    [Key(2)] public string? SessionId { get; init; }
    [Key(3)] public long Round { get; init; }

    /// <summary><see cref="ErrorCode.EpochSuperseded"/>: the epoch the verifier holds, or last closed, for the session.</summary>
    [Key(4)] public int Epoch { get; init; }
}

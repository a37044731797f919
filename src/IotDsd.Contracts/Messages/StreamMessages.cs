using MessagePack;

namespace IotDsd.Contracts.Messages;

// The server-only baseline: what a fleet would run without speculative decoding. The device sends its prompt once;
// the server generates every token with the target model and streams them down. Same envelope, same limits.
// TokenChunk also carries verifier-side decoding (a DraftRound with Stream > 0) down to a device; there Round > 0.

/// <summary>Device → server: generate <see cref="MaxTokens"/> tokens after <see cref="Prompt"/> and stream them.</summary>
[MessagePackObject]
public sealed record StreamRequest
{
    [Key(0)] public string SessionId { get; init; } = "";
    [Key(1)] public string DeviceId { get; init; } = "";
    [Key(2)] public int[] Prompt { get; init; } = [];
    [Key(3)] public SamplingSettings Sampling { get; init; } = new();
    [Key(4)] public ulong Seed { get; init; }
    [Key(5)] public int MaxTokens { get; init; }
}

/// <summary>Server or verifier → device: the tokens at positions <see cref="Index"/>.. of a streamed generation.</summary>
[MessagePackObject]
public sealed record TokenChunk
{
    [Key(0)] public string SessionId { get; init; } = "";

    /// <summary>Position of <c>Tokens[0]</c>: in the generated text for a <see cref="StreamRequest"/> (0 is the first
    /// generated token); in the session's whole committed sequence, prompt included, for a streamed round.</summary>
    [Key(1)] public int Index { get; init; }
    [Key(2)] public int[] Tokens { get; init; } = [];

    /// <summary>True on the chunk that holds the last token.</summary>
    [Key(3)] public bool Done { get; init; }

    /// <summary>Sessions in the forward pass that produced this chunk.</summary>
    [Key(4)] public int BatchSize { get; init; }

    /// <summary>Streamed round: the session epoch of the request (0 for a <see cref="StreamRequest"/>).</summary>
    [Key(5)] public int Epoch { get; init; }

    /// <summary>Streamed round: the round of the request (0 for a <see cref="StreamRequest"/>).</summary>
    [Key(6)] public long Round { get; init; }

    /// <summary>Streamed round: the verifier's pass cost line, fixed part per pass and part per token fed, ms (both 0:
    /// not reported); as <see cref="Verdict.PassFixedMs"/>.</summary>
    [Key(7)] public float PassFixedMs { get; init; }

    [Key(8)] public float PassPerTokenMs { get; init; }
}

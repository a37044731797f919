using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Sessions;

/// <summary>Why a generation ended.</summary>
public enum StopReason
{
    /// <summary>It produced its maximum number of tokens.</summary>
    MaxTokens,

    /// <summary>It generated an end-of-sequence token.</summary>
    Eos,
}

/// <summary>What a generation is asked to do; fixed for the session's life.</summary>
public sealed record SessionSettings
{
    public required string SessionId { get; init; }
    public DecodingMode Mode { get; init; } = DecodingMode.Rsr;
    public SamplingParams Sampling { get; init; } = new(1f, 0, 1f);
    public ulong Seed { get; init; }
    public int MaxTokens { get; init; } = 128;

    /// <summary>Draft length per round (the upper bound when γ adapts).</summary>
    public int Gamma { get; init; } = 4;

    /// <summary>
    /// Most draft nodes a round may carry as a token tree (greedy and dsd); 0: chains only. Sent as
    /// <c>OpenSession.MaxTreeNodes</c>.
    /// </summary>
    public int MaxTreeNodes { get; init; }

    /// <summary>Upper bound on <see cref="MaxTreeNodes"/>.</summary>
    public const int MaxTreeNodesLimit = 256;

    /// <summary>End-of-sequence ids: generation stops at the first one generated (it is committed, then nothing more).</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];

    /// <summary>Most end-of-sequence ids a session may name.</summary>
    public const int MaxStopTokens = 16;

    /// <summary>True when <paramref name="token"/> is one of <see cref="StopTokens"/>.</summary>
    public bool IsStop(int token)
    {
        foreach (var s in StopTokens)
        {
            if (s == token)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Returns null when valid, else a one-line reason naming the setting.</summary>
    public string? Validate()
    {
        if (Sampling.Validate() is { } bad)
        {
            return bad;
        }

        if (Mode == DecodingMode.Greedy && !Sampling.IsGreedy)
        {
            return $"mode greedy needs temperature 0, got {Sampling.Temperature}; use --mode rsr (or dsd, dssd) to sample";
        }

        if (MaxTokens is < 1 or > 1_000_000)
        {
            return $"max tokens must be between 1 and 1000000, got {MaxTokens}";
        }

        if (Gamma is < 1 or > 64)
        {
            return $"gamma must be between 1 and 64, got {Gamma}";
        }

        if (MaxTreeNodes is < 0 or > MaxTreeNodesLimit)
        {
            return $"max tree nodes must be between 0 (chains only) and {MaxTreeNodesLimit}, got {MaxTreeNodes}";
        }

        if (StopTokens.Count > MaxStopTokens || StopTokens.Any(t => t < 0))
        {
            return $"at most {MaxStopTokens} end-of-sequence ids, none negative";
        }

        return null;
    }
}

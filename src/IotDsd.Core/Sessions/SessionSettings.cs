using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Sessions;

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

        return null;
    }
}

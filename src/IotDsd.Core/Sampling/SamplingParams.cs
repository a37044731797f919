using IotDsd.Contracts.Messages;

namespace IotDsd.Core.Sampling;

/// <summary>Temperature, top-k and top-p, applied identically by draft and target (docs/protocol.md §2).</summary>
public readonly record struct SamplingParams(float Temperature, int TopK, float TopP)
{
    /// <summary>Temperature 0: every distribution is one-hot at the argmax.</summary>
    public static SamplingParams Greedy => new(0f, 0, 1f);

    /// <summary>True when the distribution is the argmax.</summary>
    public bool IsGreedy => Temperature <= 0f;

    /// <summary>Returns null when valid, else a one-line reason naming the bad setting.</summary>
    public string? Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0f || Temperature > 100f)
        {
            return $"temperature must be between 0 and 100, got {Temperature}";
        }

        if (TopK < 0)
        {
            return $"top-k must be 0 (off) or positive, got {TopK}";
        }

        if (!float.IsFinite(TopP) || TopP <= 0f || TopP > 1f)
        {
            return $"top-p must be in (0, 1], got {TopP}";
        }

        return null;
    }

    /// <summary>From the wire form.</summary>
    public static SamplingParams From(SamplingSettings s) => new(s.Temperature, s.TopK, s.TopP);

    /// <summary>To the wire form.</summary>
    public SamplingSettings ToWire() => new() { Temperature = Temperature, TopK = TopK, TopP = TopP };
}

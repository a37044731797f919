using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>The random context of one round: uniforms are keyed by absolute token position, never by call count.</summary>
public readonly record struct RoundRandom(ulong Seed, ulong Session, long Round)
{
    /// <summary>A uniform in [0, 1) for <paramref name="position"/> (0-based index of the token being decided).</summary>
    public double Uniform(RandomStream stream, long position, long index = 0) =>
        DeterministicRandom.Uniform(Seed, Session, Round, position, stream, index);

    /// <summary>Index of proposal <paramref name="k"/> within <paramref name="attempt"/>, unique across attempts.</summary>
    public static long ProposalIndex(int attempt, int k) => ((long)attempt << 20) | (uint)k;
}

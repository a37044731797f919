using IotDsd.Core.Sampling;

namespace IotDsd.Sim.Engine;

/// <summary>A counter-based generator (SplitMix64 over a counter): reproducible from the seed, fast, no allocation.</summary>
internal sealed class SimRandom(ulong seed)
{
    private readonly ulong _seed = DeterministicRandom.Mix(seed);
    private ulong _counter;

    /// <summary>A uniform in [0, 1).</summary>
    public double Next() => (DeterministicRandom.Mix(_seed ^ _counter++) >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform in [-1, 1).</summary>
    public double Symmetric() => (2 * Next()) - 1;
}

using IotDsd.Contracts.Messages;

namespace IotDsd.Sim.Scenarios;

/// <summary>What the simulator can run: the four wire modes and two cloud-only baselines.</summary>
public enum SimMode
{
    /// <summary>Cloud-only autoregressive decoding, each token streamed to the device.</summary>
    Cloud,

    /// <summary>Speculative decoding with both models co-located in the cloud, tokens streamed to the device.</summary>
    CloudSd,

    /// <summary>Distributed: full draft rows up (<see cref="DecodingMode.Dsd"/>).</summary>
    Dsd,

    /// <summary>Distributed: one probability per draft up, the full target row down on rejection.</summary>
    Dssd,

    /// <summary>Distributed: as dssd up, proposals drawn from the target row down on rejection.</summary>
    Rsr,

    /// <summary>Distributed, temperature 0: ids up, count and token down.</summary>
    Greedy,
}

/// <summary>Names and parsing of <see cref="SimMode"/>.</summary>
public static class SimModes
{
    public static IReadOnlyList<SimMode> All { get; } = Enum.GetValues<SimMode>();

    public static string Name(this SimMode mode) => mode switch
    {
        SimMode.Cloud => "cloud",
        SimMode.CloudSd => "cloud-sd",
        SimMode.Dsd => "dsd",
        SimMode.Dssd => "dssd",
        SimMode.Rsr => "rsr",
        SimMode.Greedy => "greedy",
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode"),
    };

    public static bool TryParse(string? text, out SimMode mode)
    {
        foreach (var m in All)
        {
            if (string.Equals(m.Name(), text, StringComparison.OrdinalIgnoreCase))
            {
                mode = m;
                return true;
            }
        }

        mode = default;
        return false;
    }

    /// <summary>True for the modes that draft on the device and verify across the link.</summary>
    public static bool IsDistributed(this SimMode mode) => mode is SimMode.Dsd or SimMode.Dssd or SimMode.Rsr or SimMode.Greedy;

    /// <summary>The wire mode of a distributed simulation mode.</summary>
    public static DecodingMode Wire(this SimMode mode) => mode switch
    {
        SimMode.Dsd => DecodingMode.Dsd,
        SimMode.Dssd => DecodingMode.Dssd,
        SimMode.Rsr => DecodingMode.Rsr,
        _ => DecodingMode.Greedy,
    };
}

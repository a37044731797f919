using IotDsd.Sim.Engine;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Reproductions;

/// <summary>The published experiments, rerun on the simulator with our modes added.</summary>
public static class Sweeps
{
    public static readonly double[] GridRtts = [0, 20, 50];
    public static readonly double[] GridMbps = [10, 50, 100];
    public static readonly double[] PlotRtts = [0, 10, 20, 50, 100, 200];
    public static readonly int[] FleetDevices = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
    public static readonly SimMode[] FleetModes = [SimMode.Cloud, SimMode.CloudSd, SimMode.Rsr, SimMode.Dssd];

    /// <summary>DSSD's grid: RTT {0, 20, 50} ms × bandwidth {10, 50, 100} Mbps, every mode, one device.</summary>
    public static IReadOnlyList<SimResult> Grid(Scenario baseline, CancellationToken ct = default)
    {
        var results = new List<SimResult>();
        foreach (var rtt in GridRtts)
        {
            foreach (var mbps in GridMbps)
            {
                foreach (var mode in SimModes.All)
                {
                    results.Add(Simulator.Run(baseline with { Mode = mode, Devices = 1, Link = baseline.Link with { RttMs = rtt, UpMbps = mbps, DownMbps = mbps } }, ct));
                }
            }
        }

        return results;
    }

    /// <summary>Time per token against RTT for each mode at the baseline's bandwidth.</summary>
    public static IReadOnlyList<SimResult> Rtt(Scenario baseline, CancellationToken ct = default)
    {
        var results = new List<SimResult>();
        foreach (var mode in SimModes.All)
        {
            foreach (var rtt in PlotRtts)
            {
                results.Add(Simulator.Run(baseline with { Mode = mode, Devices = 1, Link = baseline.Link with { RttMs = rtt } }, ct));
            }
        }

        return results;
    }

    /// <summary>SLED-style fleet: one verifier, more and more devices; fleet throughput and what each device gets.</summary>
    public static IReadOnlyList<SimResult> Fleet(Scenario baseline, CancellationToken ct = default)
    {
        var results = new List<SimResult>();
        foreach (var mode in FleetModes)
        {
            foreach (var devices in FleetDevices)
            {
                results.Add(Simulator.Run(baseline with { Mode = mode, Devices = devices, Verifier = baseline.Verifier with { Count = 1 } }, ct));
            }
        }

        return results;
    }
}

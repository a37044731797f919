using IotDsd.Sim.Engine;

namespace IotDsd.Sim.Plots;

/// <summary>The three pictures of <c>iotdsd sim --plot DIR</c>.</summary>
public static class SimPlots
{
    /// <summary>Writes the charts the given results allow; returns the files written.</summary>
    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<SimResult>? rtt, IReadOnlyList<SimResult>? fleet)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        if (rtt is { Count: > 0 })
        {
            var byMode = rtt.GroupBy(r => r.Mode).ToList();
            written.Add(Save(directory, "time-per-token-vs-rtt.svg", SvgChart.Lines(
                $"Time per token against RTT ({rtt[0].UpMbps:0.#} Mbps, γ = {rtt[0].Gamma}, V = {rtt[0].Vocab})",
                "round-trip time (ms)",
                "time per token (ms)",
                byMode.Select(g => new Series(g.Key, g.Select(r => (r.RttMs, r.TimePerTokenMs)).ToList())).ToList())));
            var atOne = byMode.Select(g => g.OrderBy(r => Math.Abs(r.RttMs - 20)).First()).ToList();
            written.Add(Save(directory, "bytes-per-token.svg", SvgChart.Bars(
                $"Payload bytes per token by mode (V = {rtt[0].Vocab}, γ = {rtt[0].Gamma})",
                "bytes per token (log)",
                atOne.Select(r => r.Mode).ToList(),
                [
                    new Series("uplink", atOne.Select((r, i) => ((double)i, Math.Max(1, r.UplinkBytesPerToken))).ToList()),
                    new Series("downlink", atOne.Select((r, i) => ((double)i, Math.Max(1, r.DownlinkBytesPerToken))).ToList()),
                ],
                logY: true)));
        }

        if (fleet is { Count: > 0 })
        {
            written.Add(Save(directory, "capacity-vs-devices.svg", SvgChart.Lines(
                "Fleet throughput of one verifier against devices",
                "devices (log)",
                "tokens/s, whole fleet",
                fleet.GroupBy(r => r.Mode).Select(g => new Series(g.Key, g.Select(r => ((double)r.Devices, r.FleetTokensPerSecond)).ToList())).ToList(),
                logX: true)));
            written.Add(Save(directory, "per-device-vs-devices.svg", SvgChart.Lines(
                "What each device gets as the fleet grows",
                "devices (log)",
                "tokens/s per device",
                fleet.GroupBy(r => r.Mode).Select(g => new Series(g.Key, g.Select(r => ((double)r.Devices, r.TokensPerSecond)).ToList())).ToList(),
                logX: true)));
        }

        return written;
    }

    private static string Save(string directory, string name, string svg)
    {
        var path = Path.Combine(directory, name);
        File.WriteAllText(path, svg);
        return path;
    }
}

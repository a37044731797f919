using System.Globalization;
using System.Text.Json;
using IotDsd.Sim.Reproductions;

namespace IotDsd.Sim.Engine;

/// <summary>Human and JSON output of the simulator: JSON lines, or fixed-width tables.</summary>
public static class SimText
{
    public static string Summary(SimResult r) => string.Create(
        CultureInfo.InvariantCulture,
        $"[sim {r.Mode} γ={r.Gamma} V={r.Vocab} rtt={r.RttMs} ms {r.UpMbps}/{r.DownMbps} Mbps, {r.Devices} device(s)] {r.Tokens} tokens, {r.Rounds} rounds, " +
        $"{r.TokensPerSecond:0.0} tokens/s per device ({r.TimePerTokenMs:0.00} ms/token), fleet {r.FleetTokensPerSecond:0} tokens/s, " +
        $"first token {r.TimeToFirstTokenMs:0.0} ms, acceptance {r.AcceptanceRate:P1}, {r.TokensPerRound:0.00} tokens/round, mean batch {r.MeanBatch:0.0}, " +
        $"uplink {r.UplinkBytesPerToken:0.0} B/token, downlink {r.DownlinkBytesPerToken:0.0} B/token; {r.Events} events in {r.WallMs:0} ms");

    public static void Table(IReadOnlyList<DssdTableRow> rows, bool json, TextWriter output)
    {
        if (json)
        {
            foreach (var row in rows)
            {
                output.WriteLine(JsonSerializer.Serialize(row));
            }

            return;
        }

        output.WriteLine("payload per round, bytes (ours: encoded by WireCodec; paper: fp32 rows and 32-bit ids only)");
        output.WriteLine($"{"V",7} {"γ",3} | {"dsd up",10} {"paper",10} | {"dssd up",8} {"paper",6} | {"dssd down",10} {"paper",8} | {"rsr down (m=4)",14}");
        foreach (var r in rows)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Vocab,7} {r.Gamma,3} | {r.DsdUplinkBytes,10} {r.PaperDsdUplinkBytes,10} | {r.DssdUplinkBytes,8} {r.PaperDssdUplinkBytes,6} | {r.DssdDownlinkBytes,10} {r.PaperDssdDownlinkBytes,8} | {r.RsrDownlinkBytes,14}"));
        }
    }

    public static void Results(IReadOnlyList<SimResult> results, bool json, TextWriter output)
    {
        if (json)
        {
            foreach (var r in results)
            {
                output.WriteLine(JsonSerializer.Serialize(r));
            }

            return;
        }

        output.WriteLine($"{"mode",-8} {"devices",7} {"rtt ms",6} {"Mbps",9} | {"ms/token",8} {"tok/s/dev",9} {"fleet tok/s",11} | {"up B/tok",9} {"down B/tok",10} | {"batch",5} {"util",5}");
        foreach (var r in results)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Mode,-8} {r.Devices,7} {r.RttMs,6} {r.UpMbps + "/" + r.DownMbps,9} | {r.TimePerTokenMs,8:0.00} {r.TokensPerSecond,9:0.0} {r.FleetTokensPerSecond,11:0} | {r.UplinkBytesPerToken,9:0.0} {r.DownlinkBytesPerToken,10:0.0} | {r.MeanBatch,5:0.0} {r.VerifierUtilisation,5:P0}"));
        }
    }
}

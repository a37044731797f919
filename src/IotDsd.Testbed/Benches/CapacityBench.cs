using System.Globalization;
using System.Text.Json.Serialization;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Testbed.Load;
using IotDsd.Testbed.Reporting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The sweep behind <c>iotdsd bench capacity</c>: the largest number of concurrent sessions whose p99 time per output
/// token stays under an SLO, for IotDsd and for the server-only baseline, with the same target model, runner and
/// broker. Each point is one load-generator run; each system climbs its session counts until the SLO breaks.
/// </summary>
internal static class CapacityBench
{
    /// <summary>What to sweep. <paramref name="Settings"/> gives session i's settings for device id lg(i / samples).</summary>
    internal sealed record Plan(
        double[] Slos, int[] Points, string Systems, int Samples, int MaxBatch, TimeSpan BatchWait, int PastSlo, bool AdaptiveGamma, bool AdaptInSampling,
        Func<int, string, SessionSettings> Settings);

    /// <summary>Runs the sweep; one line per load point goes to <paramref name="log"/>, progress to stderr.</summary>
    public static async Task<CapacityReport> RunAsync(Plan plan, ILanguageModel? draft, ILanguageModel target, int[] prompt, ILoggerFactory logging, TextWriter log, CancellationToken ct)
    {
        var (slos, points, samples) = (plan.Slos, plan.Points, plan.Samples);
        var limit = slos.Max();
        var outcome = new List<SystemCapacity>();
        var runBaseline = plan.Systems switch { "both" => new[] { false, true }, "baseline" => [true], _ => [false] };
        var progress = new ProgressReporter("bench capacity");
        progress.Start($"load points ({string.Join(", ", points)} sessions) per system, until {plan.PastSlo + 1} miss the SLO", (long)points.Length * runBaseline.Length, "load points");
        var pointsDone = 0;
        foreach (var baseline in runBaseline)
        {
            var runs = new List<LoadReport>();
            var broken = 0;
            foreach (var n in points)
            {
                var settings = Enumerable.Range(0, n * samples).Select(i => plan.Settings(i, $"lg{i / samples}")).ToArray();
                var spec = new LoadGenerator.LoadSpec(n, samples, baseline, null, null, plan.MaxBatch, null, null, TimeSpan.FromSeconds(60), plan.AdaptiveGamma, plan.AdaptInSampling, plan.BatchWait);
                var report = await LoadGenerator.RunAsync(spec, draft, target, [prompt], settings, null, [], logging, ct).ConfigureAwait(false);
                runs.Add(report);
                progress.Report(++pointsDone);
                var ok = Meets(report, limit);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.System,-8} sessions {n,4}: TPOT p50 {report.TpotP50,8:0.0} p99 {report.TpotP99,8:0.0} ms, {report.TokensPerSecond,8:0.0} tok/s, batch {report.MeanBatch:0.0}, acceptance {report.AcceptanceRate:0.00}{(report.UndraftedRounds > 0 ? $", {report.UndraftedRounds}/{report.Rounds} rounds streamed" : "")} {(ok ? "within" : "OVER")} SLO"));
                if (report.Failed > 0 || report.LostTokens > 0 || report.DuplicatedTokens > 0)
                {
                    throw new TestbedException($"{report.System} at {n} sessions: {report.Failed} failed, {report.LostTokens} lost, {report.DuplicatedTokens} duplicated: {string.Join("; ", report.Errors.Take(3))}");
                }

                if (!ok && ++broken > plan.PastSlo)
                {
                    break;
                }
            }

            outcome.Add(new SystemCapacity(runs[0].System, [.. slos.Select(l => Capacity(runs, l))], runs));
        }

        return new CapacityReport(slos, outcome);
    }

    private static bool Meets(LoadReport r, double slo) => r.Failed == 0 && r.TpotP99 <= slo;

    /// <summary>The largest session count measured within <paramref name="slo"/>.</summary>
    private static int Capacity(List<LoadReport> runs, double slo) => runs.Where(r => Meets(r, slo)).Select(r => r.Devices).DefaultIfEmpty(0).Max();

    internal sealed record SystemCapacity(
        [property: JsonPropertyName("system")] string System,
        [property: JsonPropertyName("sessions_within_slo")] IReadOnlyList<int> Sessions,
        [property: JsonPropertyName("runs")] IReadOnlyList<LoadReport> Runs);

    internal sealed record CapacityReport(
        [property: JsonPropertyName("slo_tpot_p99_ms")] IReadOnlyList<double> Slos,
        [property: JsonPropertyName("systems")] IReadOnlyList<SystemCapacity> Systems)
    {
        /// <summary>IotDsd's capacity over the baseline's, per SLO (null where either system was not run or the baseline served none).</summary>
        [JsonPropertyName("capacity_ratio")]
        public IReadOnlyList<double?> Ratios => [.. Slos.Select((_, i) =>
            Systems.Count == 2 && Systems[1].Sessions[i] > 0 ? (double?)Systems[0].Sessions[i] / Systems[1].Sessions[i] : null)];

        public string Summary()
        {
            var lines = new List<string>();
            for (var i = 0; i < Slos.Count; i++)
            {
                var slo = Slos[i];
                var parts = Systems.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.System} {s.Sessions[i]}"));
                var ratio = Ratios[i] is double r ? string.Create(CultureInfo.InvariantCulture, $", ratio {r:0.00}x") : "";
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"p99 TPOT ≤ {slo:0.#} ms: {string.Join(", ", parts)} concurrent sessions{ratio}"));
            }

            return string.Join(Environment.NewLine, lines);
        }
    }
}

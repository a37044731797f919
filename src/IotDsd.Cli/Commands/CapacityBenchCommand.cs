using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using IotDsd.Cli.Load;
using IotDsd.Cli.Output;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd bench capacity</c>: the largest number of concurrent sessions whose p99 time per output token stays
/// under an SLO, for IotDsd and for the server-only baseline, measured side by side with the same target model, the
/// same runner and the same broker. Each point is one <c>loadgen</c> run; each system climbs its list of session
/// counts until the SLO breaks.
/// </summary>
internal static class CapacityBenchCommand
{
    public static Command Create(CommonOptions common)
    {
        var slo = new Option<string>("--slo-ms") { Description = "SLOs on the p99 time per output token, in milliseconds, comma-separated: each gets its capacity from the same sweep.", DefaultValueFactory = _ => "50" };
        var counts = new Option<string>("--sessions") { Description = "Comma-separated concurrent session counts to try, ascending.", DefaultValueFactory = _ => "1,2,4,6,8,12,16,24,32,48,64" };
        var systems = new Option<string>("--systems") { Description = "Which systems to measure: iotdsd, baseline or both.", DefaultValueFactory = _ => "both" };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most sessions per forward pass, for both systems.", DefaultValueFactory = _ => 64 };
        var wait = new Option<double>("--batch-wait-ms") { Description = "Longest a round waits for others to join its forward pass (both systems).", DefaultValueFactory = _ => 1 };
        var past = new Option<int>("--past-slo") { Description = "Points to run past the first that breaks the SLO (a noisy point does not end the climb).", DefaultValueFactory = _ => 1 };
        var command = new Command("capacity", "Sessions served within a p99 time-per-output-token SLO: IotDsd against server-only decoding, side by side.")
        {
            slo, counts, systems, maxBatch, wait, past,
        };
        common.AddGeneration(command, speculative: true);
        command.SetAction(async (result, ct) =>
        {
            var slos = ParseSlos(result.GetValue(slo)!);
            var limit = slos.Max();

            var points = ParseCounts(result.GetValue(counts)!);
            var batchWait = result.GetValue(wait);
            if (!(batchWait is >= 0 and <= 1000))
            {
                throw new CliError($"--batch-wait-ms must be between 0 and 1000, got {batchWait}");
            }

            var which = result.GetValue(systems);
            if (which is not ("both" or "iotdsd" or "baseline"))
            {
                throw new CliError($"--systems must be iotdsd, baseline or both, got '{which}'");
            }

            using var logging = Runtime.Logging(result.GetValue(common.Verbose));
            using var models = common.LoadModels(result, needDraft: which != "baseline");
            var prompt = models.EncodePrompt(result.GetValue(common.Prompt)!);

            var samples = common.SampleCount(result);
            var json = result.GetValue(common.Json);
            var outcome = new List<SystemCapacity>();
            var runBaseline = which switch { "both" => new[] { false, true }, "baseline" => [true], _ => [false] };
            var progress = new ProgressReporter("bench capacity");
            progress.Start($"load points ({string.Join(", ", points)} sessions) per system, until {result.GetValue(past) + 1} miss the SLO", (long)points.Length * runBaseline.Length, "load points");
            var pointsDone = 0;
            foreach (var baseline in runBaseline)
            {
                var runs = new List<LoadReport>();
                var broken = 0;
                foreach (var n in points)
                {
                    var settings = Enumerable.Range(0, n * samples).Select(i => common.Settings(result, i, $"lg{i / samples}")).ToArray();
                    var spec = new LoadgenCommand.LoadSpec(n, samples, baseline, null, null, result.GetValue(maxBatch), null, null, TimeSpan.FromSeconds(60), result.GetValue(common.AdaptiveGamma), result.GetValue(common.AdaptInSampling), TimeSpan.FromMilliseconds(batchWait));
                    var report = await LoadgenCommand.RunAsync(spec, models, [prompt], settings, null, [], logging, ct).ConfigureAwait(false);
                    runs.Add(report);
                    progress.Report(++pointsDone);
                    var ok = Meets(report, limit);
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{report.System,-8} sessions {n,4}: TPOT p50 {report.TpotP50,8:0.0} p99 {report.TpotP99,8:0.0} ms, {report.TokensPerSecond,8:0.0} tok/s, batch {report.MeanBatch:0.0}, acceptance {report.AcceptanceRate:0.00} {(ok ? "within" : "OVER")} SLO"));
                    if (report.Failed > 0 || report.LostTokens > 0 || report.DuplicatedTokens > 0)
                    {
                        throw new CliError($"{report.System} at {n} sessions: {report.Failed} failed, {report.LostTokens} lost, {report.DuplicatedTokens} duplicated: {string.Join("; ", report.Errors.Take(3))}");
                    }

                    if (!ok && ++broken > result.GetValue(past))
                    {
                        break;
                    }
                }

                outcome.Add(new SystemCapacity(runs[0].System, [.. slos.Select(l => Capacity(runs, l))], runs));
            }

            var summary = new CapacityReport(slos, outcome);
            Console.Out.WriteLine(json ? JsonSerializer.Serialize(summary) : summary.Summary());
            return 0;
        });
        return command;
    }

    private static bool Meets(LoadReport r, double slo) => r.Failed == 0 && r.TpotP99 <= slo;

    /// <summary>The largest session count measured within <paramref name="slo"/>.</summary>
    private static int Capacity(List<LoadReport> runs, double slo) => runs.Where(r => Meets(r, slo)).Select(r => r.Devices).DefaultIfEmpty(0).Max();

    internal static double[] ParseSlos(string text)
    {
        var values = new List<double>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !(v > 0) || double.IsInfinity(v))
            {
                throw new CliError($"--slo-ms must list positive milliseconds, got '{part}'");
            }

            values.Add(v);
        }

        return values.Count > 0 ? [.. values] : throw new CliError("--slo-ms must list at least one SLO");
    }

    internal static int[] ParseCounts(string text)
    {
        var values = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n is < 1 or > 100_000)
            {
                throw new CliError($"--sessions must list counts between 1 and 100000, got '{part}'");
            }

            if (values.Count > 0 && n <= values[^1])
            {
                throw new CliError($"--sessions must be ascending, got {n} after {values[^1]}");
            }

            values.Add(n);
        }

        return values.Count > 0 ? [.. values] : throw new CliError("--sessions must list at least one count");
    }

    private sealed record SystemCapacity(
        [property: JsonPropertyName("system")] string System,
        [property: JsonPropertyName("sessions_within_slo")] IReadOnlyList<int> Sessions,
        [property: JsonPropertyName("runs")] IReadOnlyList<LoadReport> Runs);

    private sealed record CapacityReport(
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

using System.CommandLine;
using System.Globalization;
using System.Text.Json;

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
            var plan = new CapacityBench.Plan(slos, points, which, samples, result.GetValue(maxBatch), TimeSpan.FromMilliseconds(batchWait), result.GetValue(past),
                result.GetValue(common.AdaptiveGamma), result.GetValue(common.AdaptInSampling), (i, device) => common.Settings(result, i, device));
            var summary = await CapacityBench.RunAsync(plan, models.Draft, models.Target, prompt, logging, Console.Error, ct).ConfigureAwait(false);
            Console.Out.WriteLine(result.GetValue(common.Json) ? JsonSerializer.Serialize(summary) : summary.Summary());
            return 0;
        });
        return command;
    }

    internal static double[] ParseSlos(string text) =>
        ListArgument.Doubles(text, "--slo-ms", "positive milliseconds", v => v > 0 && !double.IsInfinity(v));

    internal static int[] ParseCounts(string text) => ListArgument.Ints(text, "--sessions", 1, 100_000, ascending: true);
}

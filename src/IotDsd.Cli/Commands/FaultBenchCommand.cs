using IotDsd.Inference.Models;
using System.CommandLine;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Edge.Drafting;
using IotDsd.Inference.Ngram;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd bench faults</c>: the fault soak as a measurement. One long generation through Mosquitto (a child process
/// with persistence) while the device's link is cut on a seeded schedule, the broker is restarted once and the
/// verifier process is SIGKILLed and replaced. Reports retried requests, time at each degradation level, failover and
/// recovery times, and exits 1 unless the text equals the fault-free run's with no token lost or duplicated.
/// </summary>
internal static class FaultBenchCommand
{
    public static Command Create(CommonOptions common)
    {
        var cuts = new Option<int>("--cuts") { Description = "Link cuts, placed evenly by progress.", DefaultValueFactory = _ => 50 };
        var cutMs = new Option<string>("--cut-ms") { Description = "Outage length range MIN-MAX in ms (seeded).", DefaultValueFactory = _ => "1000-10000" };
        var cutSeed = new Option<int>("--cut-seed") { Description = "Seed of the outage lengths.", DefaultValueFactory = _ => 2024 };
        var together = new Option<bool>("--together") { Description = "Restart the broker and kill the verifier at the same moment (35 % of the tokens)." };
        var timeout = new Option<double>("--request-timeout-ms") { Description = "The device's request timeout.", DefaultValueFactory = _ => 1500 };
        var command = new Command("faults", "Fault soak through Mosquitto: link cuts, a broker restart and a verifier killed mid-generation; retries, levels, failover and recovery times.")
        {
            common.Prompt, common.MaxTokens, common.Mode, common.Gamma, common.Temperature, common.TopK, common.TopP, common.Seed,
            common.Draft, common.Target, common.Verbose, cuts, cutMs, cutSeed, together, timeout,
        };
        command.SetAction(async (result, ct) =>
        {
            var settings = common.Settings(result, 0, "soak");
            var (cutMin, cutMax) = CutScheduleOptions.Range(result.GetValue(cutMs)!, "--cut-ms");
            var plan = new FaultSoakPlan
            {
                Cuts = result.GetValue(cuts),
                CutMin = cutMin,
                CutMax = cutMax,
                CutSeed = result.GetValue(cutSeed),
                Together = result.GetValue(together),
                RequestTimeout = TimeSpan.FromMilliseconds(result.GetValue(timeout)),
            };
            if (plan.Validate() is { } bad)
            {
                throw new CliError(bad);
            }

            if (MosquittoChild.Binary is null)
            {
                throw new CliError("bench faults restarts a real broker and needs Mosquitto: apt-get install mosquitto");
            }

            // The replacement verifier process is started with the target's directory: resolve the shipped pair once.
            var (draftDir, targetDir) = (result.GetValue(common.Draft), result.GetValue(common.Target));
            if (draftDir is null || targetDir is null)
            {
                var shipped = DefaultModels.Ensure();
                (draftDir, targetDir) = (draftDir ?? shipped.DraftDir, targetDir ?? shipped.TargetDir);
            }

            // Every cut logs warnings by design: without --verbose only errors are shown, and the progress lines.
            using var logging = Runtime.Logging(result.GetValue(common.Verbose), LogLevel.Error);
            using var models = ModelPair.Load(draftDir, targetDir, needDraft: true);
            var prompt = models.Tokenizer.Encode(result.GetValue(common.Prompt)!);
            if (prompt.Length == 0)
            {
                throw new CliError("--prompt must not be empty");
            }

            await using var mosquitto = await MosquittoChild.StartAsync(persistence: true).ConfigureAwait(false);
            var progress = new ProgressReporter("bench faults");
            string? phase = null;
            void Committed(string run, int tokens)
            {
                if (run != phase)
                {
                    progress.Done();
                    phase = run;
                    progress.Start(
                        run == FaultSoak.ReferenceRun ? "fault-free reference generation" : $"generation through {plan.Cuts} link cuts, a broker restart and a verifier kill",
                        settings.MaxTokens,
                        "tokens");
                }

                progress.Report(tokens);
            }

            var soak = new FaultSoak(models.Draft!, models.Target, targetDir, logging, line => Console.Error.WriteLine($"bench faults: {line}"), Committed);
            FaultSoakResult outcome;
            try
            {
                outcome = await soak.RunAsync(mosquitto, prompt, settings, plan, "soak-device", ct).ConfigureAwait(false);
                progress.Done();
            }
            catch (GenerationException ex)
            {
                throw new CliError($"the soak's generation failed: {ex.Message}");
            }

            foreach (var line in outcome.Lines(settings.Mode.Name()))
            {
                Console.Out.WriteLine(line);
            }

            if (!outcome.TextMatches)
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"FAIL: the text differs from the fault-free run, or tokens were lost or duplicated ({outcome.Committed} committed, {outcome.Reference.Count} expected)"));
                return 1;
            }

            return 0;
        });
        return command;
    }
}

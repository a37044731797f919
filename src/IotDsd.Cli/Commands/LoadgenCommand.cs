using System.CommandLine;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd loadgen</c>: N simulated devices, each its own MQTT client and session, generating at once against real
/// verifiers (or, with <c>--baseline</c>, against the server-only baseline). Without <c>--broker</c> it starts an
/// embedded broker and an in-process verifier or server. Reports time per output token, throughput, round latency,
/// bytes per token, batch sizes, and tokens lost or duplicated (which must be zero).
/// </summary>
internal static class LoadgenCommand
{
    public static Command Create(CommonOptions common)
    {
        var broker = new Option<string?>("--broker") { Description = "MQTT 5 broker as HOST:PORT (default: an embedded broker with an in-process verifier or server)." };
        var devices = new Option<int>("--devices") { Description = "Simulated devices, each its own MQTT client and session.", DefaultValueFactory = _ => 8 };
        var baseline = new Option<bool>("--baseline") { Description = "Drive the server-only baseline (iotdsd server) instead of IotDsd's verifiers." };
        var id = new Option<string?>("--id") { Description = "Verifier id to pin (default: discover) or, with --baseline, the server id (default server-1)." };
        var watch = new Option<string[]>("--watch") { Description = "NAME=PID of a process whose CPU and memory to report (repeatable), e.g. broker=1234.", AllowMultipleArgumentsPerToken = false };
        var maxBatch = new Option<int>("--max-batch") { Description = "Embedded verifier or server: most sessions per forward pass.", DefaultValueFactory = _ => 32 };
        var check = new Option<bool>("--check") { Description = "Compare every greedy or baseline text with target-only decoding.", DefaultValueFactory = _ => true };
        var sequential = SequentialOption.Create();
        var timeout = new Option<int>("--request-timeout-ms") { Description = "Wait for a reply before resending.", DefaultValueFactory = _ => 10_000 };
        var command = new Command("loadgen", "Run N simulated devices at once against real verifiers (or the server-only baseline) and report capacity figures.")
        {
            broker, devices, baseline, id, watch, maxBatch, check, timeout, sequential, common.Username, common.Password,
        };
        common.AddGeneration(command, speculative: true, defaultPrompts: true);
        command.SetAction(async (result, ct) =>
        {
            var n = result.GetValue(devices);
            if (n is < 1 or > 100_000)
            {
                throw new CliError($"--devices must be between 1 and 100000, got {n}");
            }

            var samples = common.SampleCount(result);
            var useBaseline = result.GetValue(baseline);
            var watched = (result.GetValue(watch) ?? []).Select(ProcessWatch.Parse).ToList();
            using var logging = Runtime.Logging(result.GetValue(common.Verbose));
            using var models = common.LoadModels(result, needDraft: !useBaseline);
            var prompts = (result.GetValue(common.PromptOrDefaultSet) is { } text ? [text] : LoadGenerator.DefaultPrompts()).Select(models.EncodePrompt).ToArray();
            if (prompts.Any(p => p.Length == 0))
            {
                throw new CliError("--prompt must not be empty");
            }

            var settings = Enumerable.Range(0, n * samples).Select(i => common.Settings(result, i, $"lg{i / samples}")).ToArray();
            var references = result.GetValue(check) ? LoadGenerator.References(models.Target, prompts, settings, samples, useBaseline) : null;
            var spec = new LoadGenerator.LoadSpec(n, samples, useBaseline, result.GetValue(broker), result.GetValue(id), result.GetValue(maxBatch),
                result.GetValue(common.Username), common.PasswordOf(result), TimeSpan.FromMilliseconds(result.GetValue(timeout)), result.GetValue(common.AdaptiveGamma), result.GetValue(common.AdaptInSampling), Sequential: result.GetValue(sequential));
            var report = await LoadGenerator.RunAsync(spec, models.Draft, models.Target, prompts, settings, references, watched, logging, ct).ConfigureAwait(false);
            Console.Out.WriteLine(result.GetValue(common.Json) ? System.Text.Json.JsonSerializer.Serialize(report) : report.Summary());
            return report.Failed == 0 && report.LostTokens == 0 && report.DuplicatedTokens == 0 && report.ReferenceMismatches == 0 ? 0 : 1;
        });
        return command;
    }
}

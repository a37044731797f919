using System.CommandLine;
using System.Globalization;
using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd bench models</c>: draft decode rate, managed bytes per decode step, verification latency against γ and
/// batched verification against the batch size, for a built transformer pair (or any --draft/--target directories).
/// </summary>
internal static class BenchModelsCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "Transformer pair to build (once, into the model cache) and measure: tiny or small.", DefaultValueFactory = _ => "tiny" };
        var draft = new Option<string?>("--draft") { Description = "Draft model directory (instead of --preset)." };
        var target = new Option<string?>("--target") { Description = "Target model directory (instead of --preset)." };
        var iterations = new Option<int>("--iterations") { Description = "Timed repetitions per point (medians are reported).", DefaultValueFactory = _ => 20 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads.", DefaultValueFactory = _ => 1 };
        var batches = new Option<string>("--batches") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,2,4,8,16" };
        var provider = new Option<string?>("--provider") { Description = "cpu or cuda (default: $IOTDSD_EXECUTION_PROVIDER, else cpu)." };
        var library = new Option<string?>("--provider-library") { Description = "CUDA: path of libonnxruntime_providers_cuda.so (default: $IOTDSD_PROVIDER_LIBRARY)." };
        var contexts = new Option<string?>("--contexts") { Description = "Comma-separated cached-context lengths: time only a γ verification pass per (batch, context), for the target alone." };
        var gamma = new Option<int>("--gamma") { Description = "Drafted tokens per verification pass, with --contexts.", DefaultValueFactory = _ => 4 };
        var json = new Option<bool>("--json") { Description = "With --contexts: one JSON object per (batch, context) line." };
        var command = new Command("models", "Draft tokens/s, managed bytes per decode step, verification latency vs gamma (1-8) and vs batch size; with --contexts, verification latency vs cached context.")
        {
            preset, draft, target, iterations, threads, batches, provider, library, contexts, gamma, json,
        };
        command.SetAction(result =>
        {
            var n = result.GetValue(iterations);
            if (n is < 1 or > 10_000)
            {
                throw new CliError($"--iterations must be between 1 and 10000, got {n}");
            }

            var sizes = ParseBatches(result.GetValue(batches)!);
            InferenceOptions options, draftOptions;
            try
            {
                // The draft follows $IOTDSD_DRAFT_PROVIDER where set (an n-gram draft stays on the CPU beside a CUDA target).
                var providers = ModelProviders.Resolve(result.GetValue(provider), null, null, result.GetValue(library));
                (options, draftOptions) = (providers.Target with { IntraOpThreads = Math.Clamp(result.GetValue(threads), 1, 64) }, providers.Draft with { IntraOpThreads = Math.Clamp(result.GetValue(threads), 1, 64) });
            }
            catch (ExecutionProviderException ex)
            {
                throw new CliError(ex.Message);
            }

            var (draftDir, targetDir) = (result.GetValue(draft), result.GetValue(target));
            var contextText = result.GetValue(contexts);
            if (contextText is not null)
            {
                var g = result.GetValue(gamma);
                if (g is < 1 or > 16)
                {
                    throw new CliError($"--gamma must be between 1 and 16, got {g}");
                }

                var lengths = ListArgument.Ints(contextText, "--contexts", 1, 1 << 20);
                targetDir ??= ModelsBench.EnsurePreset(result.GetValue(preset)!, Console.Error).Target;
                using var loaded = ModelPair.Load(null, targetDir, needDraft: false, options: options);
                try
                {
                    ModelsBench.RunContexts(loaded.Target, options, n, sizes, lengths, g, result.GetValue(json), Console.Out);
                }
                catch (ArgumentException ex)
                {
                    throw new CliError(ex.Message);
                }

                return 0;
            }

            if (result.GetValue(json))
            {
                throw new CliError("--json needs --contexts");
            }

            if ((draftDir is null) != (targetDir is null))
            {
                throw new CliError("give both --draft and --target, or neither (then --preset is built)");
            }

            if (draftDir is null)
            {
                (draftDir, targetDir) = ModelsBench.EnsurePreset(result.GetValue(preset)!, Console.Error);
            }

            using var models = ModelPair.Load(draftDir, targetDir, true, true, new ModelProviders(draftOptions, options));
            ModelsBench.Run(models.Draft!, models.Target, options, n, sizes, Console.Out);
            return 0;
        });
        return command;
    }

    private static int[] ParseBatches(string text) => ListArgument.Ints(text, "--batches", 1, 256);
}

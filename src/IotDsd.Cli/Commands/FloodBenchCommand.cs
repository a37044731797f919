using IotDsd.Inference.Models;
using System.CommandLine;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd bench flood</c>: how much one flooding device slows the others. Honest devices generate greedily through
/// one verifier (with its default limits) twice — alone, then while a flooder publishes as fast as the broker takes
/// it, a mix of junk and session-open spam on its own rounds topic — and their round latencies are compared.
/// </summary>
internal static class FloodBenchCommand
{
    public static Command Create()
    {
        var devices = new Option<int>("--devices") { Description = "Honest devices generating at once.", DefaultValueFactory = _ => 4 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens each honest device generates per phase.", DefaultValueFactory = _ => 400 };
        var window = new Option<int>("--in-flight") { Description = "Flood publishes in flight at once.", DefaultValueFactory = _ => 64 };
        var command = new Command("flood", "Round latency of honest devices with and without one device flooding the verifier.") { devices, tokens, window };
        command.SetAction(async (result, ct) =>
        {
            var n = result.GetValue(devices);
            var k = result.GetValue(tokens);
            if (n is < 1 or > 64 || k is < 20 or > 100_000)
            {
                throw new CliError("--devices must be 1-64 and --tokens 20-100000");
            }

            using var models = ModelPair.Load(null, null, needDraft: true, pair: ModelPair.NgramPair);
            var report = await FloodBench.RunAsync(models.Draft!, models.Target, models.Tokenizer.Encode(FloodBench.Prompt), n, k, result.GetValue(window), ct).ConfigureAwait(false);
            Console.Out.WriteLine(report);
            return 0;
        });
        return command;
    }
}

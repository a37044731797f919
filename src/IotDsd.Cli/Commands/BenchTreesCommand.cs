using System.CommandLine;
using IotDsd.Inference.Models;
using IotDsd.Testbed.Benches;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd bench trees</c>: the verifier's cost of token trees against chains, and their uplink bytes per round.</summary>
internal static class BenchTreesCommand
{
    public static Command Create()
    {
        var batches = new Option<string>("--batches") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,8,32" };
        var rounds = new Option<int>("--rounds") { Description = "Timed rounds per point (the median batch is reported).", DefaultValueFactory = _ => 12 };
        var json = new Option<bool>("--json") { Description = "One JSON object per point a line instead of the table." };
        var command = new Command("trees", "Verifier cost of token trees against chains at several batch sizes, and uplink bytes per round, with the shipped pair ($IOTDSD_PAIR).")
        {
            batches, rounds, json,
        };
        command.SetAction(result =>
        {
            var n = result.GetValue(rounds);
            if (n is < 1 or > 100)
            {
                throw new CliError($"--rounds must be between 1 and 100, got {n}");
            }

            var sizes = ListArgument.Ints(result.GetValue(batches)!, "--batches", 1, 256);
            using var models = ModelPair.Load(null, null, needDraft: true);
            TreeCostBench.Run(models.Draft!, models.Target, [.. TreeCostBench.Prompts.Select(models.EncodePrompt)], sizes, n, result.GetValue(json), Console.Out);
            return 0;
        });
        return command;
    }
}

using IotDsd.Inference.Models;
using System.CommandLine;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd bench rtt</c>: what one speculative round costs beyond the MQTT round trip itself. Measures a bare
/// QoS 1 ping-pong over the same client stack, then greedy rounds through the pipeline, and subtracts drafting and
/// verification time from each round.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CommonOptions common)
    {
        var count = new Option<int>("--count") { Description = "Ping-pongs and generated tokens.", DefaultValueFactory = _ => 2000 };
        var payload = new Option<int>("--payload") { Description = "Ping payload bytes.", DefaultValueFactory = _ => 64 };
        var broker = new Option<string?>("--broker") { Description = "Broker HOST:PORT (default: an embedded broker)." };
        var rtt = new Command("rtt", "Round-trip overhead per round versus a bare MQTT QoS 1 ping-pong.") { count, payload, broker };
        rtt.SetAction(async (result, ct) =>
        {
            var n = result.GetValue(count);
            if (n is < 10 or > 1_000_000)
            {
                throw new CliError($"--count must be between 10 and 1000000, got {n}");
            }

            var address = result.GetValue(broker) is { } text ? BrokerAddress.TryParse(text, out var error) ?? throw new CliError(error!) : null;
            using var models = ModelPair.Load(null, null, needDraft: true, pair: ModelPair.NgramPair);
            var report = await RttBench.RunAsync(address, n, result.GetValue(payload), models.Draft!, models.Target, models.Tokenizer.Encode(RttBench.Prompt), ct).ConfigureAwait(false);
            Console.Out.WriteLine(report);
            return 0;
        });
        return new Command("bench", "Measurements.") { rtt, BenchModelsCommand.Create(), FloodBenchCommand.Create(), CapacityBenchCommand.Create(common), FaultBenchCommand.Create(common), BenchTreesCommand.Create(), WanBenchCommand.Create(common) };
    }
}

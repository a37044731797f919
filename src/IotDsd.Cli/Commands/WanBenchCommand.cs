using System.CommandLine;
using System.Text.Json;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd bench wan</c>: the real system through emulated WAN links (docs/performance.md, "WAN links").</summary>
internal static class WanBenchCommand
{
    public static Command Create(CommonOptions common)
    {
        Option<string> List(string name, string description, string value) => new(name) { Description = description, DefaultValueFactory = _ => value };
        var tables = List("--tables", "Tables to measure: a (sequential against default by delay), b (modes by link and vocabulary).", "a,b");
        var delays = List("--delays", "Table A: one-way delays, ms.", "0,10,25,50,100");
        var vocabs = List("--vocabs", "Table B: vocabulary sizes (256: the byte n-gram pair; others: a tiny builder target padded to it).", "256,32000,152064");
        var links = List("--links", "Table B: cellular (2/10 Mbit/s, 30 ms) and/or narrowband (64 kbit/s, 100 ms).", "cellular,narrowband");
        var modes = List("--modes", "Table B: wire modes.", "greedy,dsd,dssd,rsr");
        var realistic = List("--realistic", "Table A: compute-realistic target preset (small, tiny) with a draft distilled from it, or none.", "small");
        var tokens = new Option<int>("--tokens") { Description = "Tokens per Table A cell.", DefaultValueFactory = _ => 64 };
        var cellTokens = new Option<int>("--cell-tokens") { Description = "Tokens per Table B cell.", DefaultValueFactory = _ => 24 };
        var limit = new Option<double>("--cell-limit-s") { Description = "Longest a Table B cell runs (the device's transfer timeout cap is half of it).", DefaultValueFactory = _ => 30 };
        var broker = new Option<string?>("--broker") { Description = "Broker HOST:PORT (default: an embedded broker)." };
        var command = new Command("wan", "The real system through emulated WAN links: sequential against default by delay, and the wire modes by link and vocabulary.")
        {
            tables, delays, vocabs, links, modes, realistic, tokens, cellTokens, limit, broker, common.Json,
        };
        command.SetAction(async (result, ct) =>
        {
            var (plan, error) = WanPlan.Parse(result.GetValue(tables)!, result.GetValue(delays)!, result.GetValue(vocabs)!, result.GetValue(links)!,
                result.GetValue(modes)!, result.GetValue(tokens), result.GetValue(cellTokens), result.GetValue(limit), result.GetValue(realistic)!);
            var address = result.GetValue(broker) is { } text ? BrokerAddress.TryParse(text, out var bad) ?? throw new CliError(bad!) : null;
            var report = await WanBench.RunAsync(plan ?? throw new CliError(error!), address, Console.Error, ct).ConfigureAwait(false);
            Console.Out.WriteLine(result.GetValue(common.Json) ? JsonSerializer.Serialize(report) : report.ToMarkdown());
            return 0;
        });
        return command;
    }
}

using IotDsd.Inference.Models;
using System.CommandLine;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd demo</c>: an embedded broker, a verifier and a draft worker in one process. All traffic still crosses
/// the broker over TCP on loopback.
/// </summary>
internal static class DemoCommand
{
    public static Command Create(CommonOptions common)
    {
        var command = new Command("demo", "Run broker, verifier and draft worker in one process and generate text (all traffic crosses the broker over TCP).");
        common.AddGeneration(command, speculative: true);
        command.Add(common.Sequential);
        var level = LevelOption.Create();
        var streamTokens = new Option<int>("--stream-tokens") { Description = "At verifier-decoding, tokens the verifier decodes and streams per request; 0 sends γ = 0 rounds instead.", DefaultValueFactory = _ => 16 };
        command.Add(level);
        command.Add(streamTokens);
        command.SetAction((result, ct) => RunAsync(common, result, ParseLevel(result.GetValue(level)), result.GetValue(streamTokens), ct));
        return command;
    }

    private static DegradationLevel? ParseLevel(string? text) => LevelOption.Parse(text, bad => throw new CliError($"--level {bad}"));

    private static async Task<int> RunAsync(CommonOptions common, ParseResult result, DegradationLevel? level, int streamTokens, CancellationToken ct)
    {
        var edge = new EdgeOptions
        {
            Broker = new BrokerAddress("127.0.0.1", 1),
            DeviceId = "demo-device",
            VerifierId = "demo-verifier",
            AdaptiveGamma = result.GetValue(common.AdaptiveGamma),
            Sequential = result.GetValue(common.Sequential),
            PinnedLevel = level,
            AdaptGammaInSampling = result.GetValue(common.AdaptInSampling) || level is > DegradationLevel.Normal, // asking for a rung below normal is asking for its γ
            StreamTokens = streamTokens,
        };
        if (edge.Validate() is { } bad)
        {
            throw new CliError(bad.Replace("stream tokens", "--stream-tokens", StringComparison.Ordinal));
        }

        var samples = common.SampleCount(result);
        var first = common.Settings(result, 0, "demo");
        using var logging = Runtime.Logging(result.GetValue(common.Verbose));
        using var models = common.LoadModels(result, needDraft: true);
        await using var broker = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "demo-verifier" }, models.Target, logging.CreateLogger<VerifierService>());
        await verifier.StartAsync(ct).ConfigureAwait(false);
        await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await using var worker = new DraftWorker(edge with { Broker = address }, models.Draft!, logging.CreateLogger<DraftWorker>());
            await worker.StartAsync(ct).ConfigureAwait(false);
            await GenerationLoop.RunAsync(worker, models, common, result, samples, "demo", ct).ConfigureAwait(false);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }

        return 0;
    }
}

/// <summary>Runs the requested samples through a draft worker and prints text, summaries or JSON lines.</summary>
internal static class GenerationLoop
{
    public static async Task RunAsync(DraftWorker worker, ModelPair models, CommonOptions common, ParseResult result, int samples, string prefix, CancellationToken ct)
    {
        var json = result.GetValue(common.Json);
        var prompt = models.EncodePrompt(result.GetValue(common.Prompt)!);

        var reports = new List<GenerationReport>(samples);
        for (var i = 0; i < samples; i++)
        {
            var settings = models.WithStops(common.Settings(result, i, prefix));
            var stream = models.Tokenizer.CreateStreamDecoder(atStart: result.GetValue(common.Prompt)!.Length == 0);
            var text = new System.Text.StringBuilder();
            if (!json)
            {
                Console.Out.Write(result.GetValue(common.Prompt));
            }

            var report = await worker.GenerateAsync(prompt, settings, token =>
            {
                var piece = stream.Append(token);
                text.Append(piece);
                if (!json && piece.Length > 0)
                {
                    Console.Out.Write(piece);
                    Console.Out.Flush();
                }
            }, UnverifiedPrinter.Create(models), ct).ConfigureAwait(false);
            if (result.GetValue(common.CalibrationOut) is not null)
            {
                reports.Add(report);
            }

            var tail = stream.Flush();
            text.Append(tail);
            if (json)
            {
                Console.Out.WriteLine(CompletionJson.From(report, text.ToString()).ToLine());
            }
            else
            {
                Console.Out.WriteLine(tail);
                Console.Out.WriteLine();
                Console.Out.WriteLine(Summary.Of(report));
            }
        }

        if (result.GetValue(common.CalibrationOut) is { } calibrationOut)
        {
            CalibrationWriter.Write(calibrationOut, reports, prefix, models.Target.VocabSize, prompt.Length);
        }
    }
}

/// <summary>Shows draft-only text produced while the link is down on stderr, flagged as unverified: never silent, never mixed into the text.</summary>
internal static class UnverifiedPrinter
{
    public static Action<int, bool> Create(ModelPair models)
    {
        var pending = new List<int>();
        return (token, end) =>
        {
            if (!end)
            {
                pending.Add(token);
                return;
            }

            var stream = models.Tokenizer.CreateStreamDecoder();
            var text = string.Concat(pending.Select(stream.Append)) + stream.Flush();
            pending.Clear();
            Console.Error.WriteLine($"iotdsd: link down; UNVERIFIED draft-only continuation (lossy, not part of the text): {text}");
        };
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Hosting;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Testbed.Load;
using IotDsd.Testbed.Reporting;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// <c>iotdsd bench wan</c>: the real system (a verifier and a draft worker in process, over a real broker) through the
/// link emulator. Table A: greedy tokens/s and tokens per round, sequential against the device's default shape, at
/// several one-way delays, with the shipped pair and a compute-realistic transformer pair, text checked against the
/// target alone. Table B: per-round latency and bytes per token of greedy, dsd, dssd and rsr on a cellular-like and a
/// narrowband link at several vocabulary sizes, next to the simulator calibrated on a loopback run of the same cell.
/// </summary>
internal static partial class WanBench
{
    private const string VerifierId = "wan-verifier";

    /// <summary>Runs the plan on <paramref name="address"/> (an embedded broker when null); progress goes to <paramref name="log"/>.</summary>
    public static async Task<WanReport> RunAsync(WanPlan plan, BrokerAddress? address, TextWriter log, CancellationToken ct)
    {
        EmbeddedBroker? embedded = null;
        if (address is null)
        {
            embedded = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
            address = new BrokerAddress("127.0.0.1", embedded.Port);
        }

        var progress = new ProgressReporter("bench wan", log);
        var report = new WanReport
        {
            Broker = embedded is null ? address.ToString() : "embedded",
            Cores = Environment.ProcessorCount,
            ShapesDistinct = WanShapes.Distinct,
            Links = plan.Links.Select(l => l.Describe()).ToList(),
        };
        var devices = new List<string>();
        try
        {
            if (plan.TableA)
            {
                using (var shipped = ModelPair.Load(null, null, needDraft: true))
                {
                    await TableAPairAsync(plan, address, $"shipped: {shipped.Target.Name} + {shipped.Draft!.Name}", shipped, report, devices, progress, ct).ConfigureAwait(false);
                }

                if (plan.Realistic is { } preset)
                {
                    var (draftDir, targetDir, name) = WanModels.Realistic(preset, DefaultModels.DefaultCacheRoot(), progress.Step);
                    using var realistic = ModelPair.Load(draftDir, targetDir, needDraft: true);
                    await TableAPairAsync(plan, address, name, realistic, report, devices, progress, ct).ConfigureAwait(false);
                }
            }

            if (plan.TableB)
            {
                foreach (var vocab in plan.Vocabs)
                {
                    var dirs = WanModels.ForVocab(vocab, DefaultModels.DefaultCacheRoot(), progress.Step);
                    using var models = dirs is { } d ? ModelPair.Load(d.DraftDir, d.TargetDir, needDraft: true) : ModelPair.Load(null, null, needDraft: true, pair: ModelPair.NgramPair);
                    await TableBVocabAsync(plan, address, vocab, models, report, devices, progress, ct).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            if (embedded is not null)
            {
                await embedded.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                await RetainedCleanup.ClearAsync(address, null, null, RetainedCleanup.Topics(devices, [VerifierId]), CancellationToken.None).ConfigureAwait(false);
            }
        }

        return report;
    }

    private static async Task TableAPairAsync(WanPlan plan, BrokerAddress broker, string name, ModelPair models, WanReport report, List<string> devices, ProgressReporter progress, CancellationToken ct)
    {
        var prompt = models.EncodePrompt(plan.Prompt);
        var settings = models.WithStops(new SessionSettings
        {
            SessionId = "wan-a", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = plan.Seed, MaxTokens = plan.TokensA, Gamma = plan.Gamma,
        });
        progress.Step($"{name}: the target alone, {plan.TokensA} greedy tokens (the reference text)");
        var reference = Autoregressive.Generate(models.Target, prompt, settings.Sampling, settings.Seed, settings.SessionId, settings.MaxTokens, [.. settings.StopTokens]);
        await using var verifier = await VerifierAsync(broker, models, ct).ConfigureAwait(false);
        await WarmUpAsync(broker, models, prompt, settings, devices, ct).ConfigureAwait(false);
        var shapes = new (string Name, Func<EdgeOptions, EdgeOptions> Options)[] { ("sequential", WanShapes.Sequential), ("default", WanShapes.Default) };
        foreach (var delay in plan.Delays)
        {
            foreach (var (shape, options) in shapes)
            {
                progress.Step($"{name}: {shape}, {delay} ms one way");
                var device = Device(devices, $"wan-a-{report.TableA.Count}");
                var outcome = await WanCell.RunAsync(broker, VerifierId, device, o => options(plan.Device(o)), EmulatedLink.Delay(delay), models.Draft!, prompt,
                    settings with { SessionId = device }, plan.CellLimit * 4, ct).ConfigureAwait(false);
                report.TableA.Add(WanRowA.Of(name, delay, shape, outcome, reference));
            }
        }
    }

    private static async Task TableBVocabAsync(WanPlan plan, BrokerAddress broker, int vocab, ModelPair models, WanReport report, List<string> devices, ProgressReporter progress, CancellationToken ct)
    {
        var prompt = models.EncodePrompt(plan.Prompt);
        await using var verifier = await VerifierAsync(broker, models, ct).ConfigureAwait(false);
        var baseSettings = models.WithStops(new SessionSettings { SessionId = "wan-b", Seed = plan.Seed, MaxTokens = plan.TokensB, Gamma = plan.Gamma });
        await WarmUpAsync(broker, models, prompt, baseSettings with { Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy }, devices, ct).ConfigureAwait(false);
        foreach (var mode in plan.Modes)
        {
            var settings = baseSettings with
            {
                Mode = mode,
                Sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : new SamplingParams(plan.Temperature, 0, 1f),
            };
            progress.Step($"V = {vocab}, {mode.Name()}: loopback (the simulator's calibration)");
            var device = Device(devices, $"wan-b-{report.TableB.Count}-loop");
            var loopback = await WanCell.RunAsync(broker, VerifierId, device, plan.Device, EmulatedLink.Perfect, models.Draft!, prompt,
                settings with { SessionId = device }, plan.CellLimit, ct).ConfigureAwait(false);
            foreach (var link in plan.Links)
            {
                progress.Step($"V = {vocab}, {mode.Name()}: {link.Describe()}");
                device = Device(devices, $"wan-b-{report.TableB.Count}");
                var real = await WanCell.RunAsync(broker, VerifierId, device, plan.Device, new EmulatedLink(link.Up, link.Down), models.Draft!, prompt,
                    settings with { SessionId = device }, plan.CellLimit, ct).ConfigureAwait(false);
                var sim = WanPrediction.Simulate(loopback, link, real.LateMs, models.Target.VocabSize, prompt.Length, ct);
                report.TableB.Add(WanRowB.Of(vocab, link.Name, mode.Name(), real, loopback, sim));
            }
        }
    }

    private static string Device(List<string> devices, string id)
    {
        devices.Add(id);
        return id;
    }

    private static async Task WarmUpAsync(BrokerAddress broker, ModelPair models, int[] prompt, SessionSettings settings, List<string> devices, CancellationToken ct)
    {
        var device = Device(devices, $"wan-warm-{devices.Count}");
        await WanCell.RunAsync(broker, VerifierId, device, o => o, EmulatedLink.Perfect, models.Draft!, prompt,
            settings with { SessionId = device, MaxTokens = Math.Min(16, settings.MaxTokens) }, TimeSpan.FromMinutes(2), ct).ConfigureAwait(false);
    }

    private static async Task<RunningVerifier> VerifierAsync(BrokerAddress broker, ModelPair models, CancellationToken ct)
    {
        var verifier = new VerifierService(new VerifierOptions { Broker = broker, VerifierId = VerifierId, BatchWait = TimeSpan.Zero }, models.Target, NullLogger<VerifierService>.Instance);
        await verifier.StartAsync(ct).ConfigureAwait(false);
        await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
        return new RunningVerifier(verifier);
    }

    /// <summary>A started verifier, stopped and disposed at the end of its table section.</summary>
    private sealed class RunningVerifier(VerifierService verifier) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
            verifier.Dispose();
        }
    }
}

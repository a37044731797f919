using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Inference.Models;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Testbed.Faults;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The round trip steps up in the middle of a greedy generation with the shipped pair (stories260K target, distilled
/// 4-gram draft): the device reaches its verifier through the user-space link emulator (real sockets and broker, no
/// privileges needed), whose one-way delay goes from 5 ms to 80 ms after <see cref="StepAt"/> committed tokens. The
/// text is the target's own either way. With <c>Sequential</c> every round is a chain of the session's γ. The shape
/// controller (on by default) chooses chain depths on this device loop; its round-trip estimate is the median of the
/// last seven rounds, so four rounds after the step it sees the new round trip, and within <see cref="SettleRounds"/>
/// rounds it is at the depth it then holds (save its probes of a neighbouring depth, one round in 16) — never shallower
/// than before the step. How far it moves depends on this machine's verifier cost per draft: where drafts cost
/// microseconds against a 15 ms round trip the deepest chain may already be best at 5 ms. The move to a new shape when
/// the optimum does change is asserted on synthetic rounds in ShapeControllerTests.
/// </summary>
public sealed class RttStepTests(ITestOutputHelper output)
{
    /// <summary>Rounds after which the controller holds its shape.</summary>
    public const int SettleRounds = 8;

    private const int Tokens = 320;
    private const int StepAt = 100;
    private const int Gamma = 4;
    private const string Prompt = "Once upon a time";
    private static readonly TimeSpan Near = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan Far = TimeSpan.FromMilliseconds(80);
    private static readonly Lazy<ModelPair> Stories = new(() => ModelPair.Load(null, null, needDraft: true, pair: ModelPair.StoriesPair));

    [Fact]
    public async Task Greedy_OneWayDelaySteps5To80Ms_SettlesNoShallowerWithinEightRounds_TextAsTargetAlone()
    {
        var (report, step, full) = await RunAsync("rtt-step", sequential: false);
        var depths = report.DraftedPerRound.Take(full).ToArray();
        output.WriteLine("depths: " + string.Join(' ', depths.Select((d, i) => i == step ? $"| {d}" : $"{d}")));
        var before = Mode(depths[Math.Max(1, step - 8)..step]);
        var after = Mode(depths[(step + SettleRounds)..]);
        var settled = Array.FindIndex(depths, step, d => d == after) - step;
        output.WriteLine($"settled depth {before} before the step, {after} after, reached {settled} rounds after the step");
        Assert.True(after >= before, $"a 16× longer round trip made the controller shallower: {before} → {after}");
        Assert.InRange(settled, 0, SettleRounds);
        var held = depths[(step + SettleRounds)..];
        Assert.True(held.Count(d => d == after) >= held.Length - (held.Length / ShapeControllerProbes) - 1, $"{held.Count(d => d == after)} of {held.Length} rounds at {after}");
    }

    [Fact]
    public async Task Sequential_SameStep_EveryRoundAChainOfGamma_TextAsTargetAlone()
    {
        var (report, _, full) = await RunAsync("rtt-step-seq", sequential: true);
        Assert.All(report.DraftedPerRound.Take(full), d => Assert.Equal(Gamma, d));
    }

    /// <summary>
    /// Generates through the emulated link, stepping its delay. Returns the report, the first round after the step, and
    /// how many rounds came before the end clamped their depth (a round never drafts past the last token).
    /// </summary>
    private async Task<(GenerationReport Report, int Step, int Full)> RunAsync(string id, bool sequential)
    {
        var pair = Stories.Value;
        var settings = new SessionSettings { SessionId = id, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = Tokens, Gamma = Gamma };
        var prompt = pair.EncodePrompt(Prompt);
        var reference = Autoregressive.Generate(pair.Target, prompt, settings.Sampling, settings.Seed, settings.SessionId, Tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = id + "-v" }, pair.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30));
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        link.Configure(new LinkProfile { Delay = Near }, new LinkProfile { Delay = Near });
        await link.StartAsync();
        var options = FaultSoak.DeviceOptions(link.Port, id + "-d", id + "-v", TimeSpan.FromSeconds(10)) with { Sequential = sequential };
        await using var worker = new DraftWorker(options, pair.Draft!, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        var committed = 0;
        void OnToken(int _)
        {
            if (++committed == StepAt)
            {
                link.Configure(new LinkProfile { Delay = Far }, new LinkProfile { Delay = Far });
            }
        }

        var report = await worker.GenerateAsync(prompt, settings, OnToken, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(3));
        await verifier.StopAsync(CancellationToken.None);
        Assert.Equal(reference, report.Tokens);
        Assert.Empty(log.Errors);

        // Tokens are shown as their round commits: the step came after the round whose tokens reached StepAt.
        var before = new List<int>();
        var total = 0;
        foreach (var accepted in report.AcceptedPerRound)
        {
            before.Add(total);
            total += accepted + 1;
        }

        var step = before.FindLastIndex(b => b < StepAt) + 1;
        var deepest = sequential ? Gamma : options.MaxDepth;
        var full = before.TakeWhile(b => Tokens - b - 1 >= deepest).Count();
        var near = Median(Enumerable.Range(0, step).Select(r => report.RoundMillis[r] - report.DraftMillis[r]));
        var far = Median(Enumerable.Range(step, report.RoundMillis.Count - step).Select(r => report.RoundMillis[r] - report.DraftMillis[r]));
        // Tokens per second either side of the step, leaving out the first round (it pays the warm-up).
        var seconds = (Enumerable.Range(1, step - 1).Sum(r => report.RoundMillis[r]) / 1000, Enumerable.Range(step, report.RoundMillis.Count - step).Sum(r => report.RoundMillis[r]) / 1000);
        output.WriteLine($"{(sequential ? "sequential" : "shape controller")}: {report.Rounds} rounds, step before round {step}; median send-to-verdict {near:0.0} ms before, {far:0.0} ms after; " +
            $"tokens/s {(before[step] - before[1]) / seconds.Item1:0.0} before, {(Tokens - before[step]) / seconds.Item2:0.0} after");
        Assert.True(far >= 2 * Far.TotalMilliseconds, $"after the step a round took {far:0.0} ms: the new delay was not in force");
        return (report, step, full);
    }

    private const int ShapeControllerProbes = Core.Adaptive.ShapeController.ProbeEvery;

    private static int Mode(int[] values) => values.GroupBy(d => d).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key).First().Key;

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[sorted.Length / 2];
    }
}

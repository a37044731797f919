using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Inference.Models;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Testbed.Faults;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using IotDsd.Messaging.Connections;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The round trip steps up in the middle of a greedy generation with the shipped pair (stories260K target, distilled
/// 4-gram draft): the device reaches its verifier through the
/// user-space link emulator (real sockets, no privileges needed), whose one-way delay goes from 5 ms to 80 ms after a
/// set number of committed tokens. The shape controller, on by default, settles on deeper rounds within
/// <see cref="SettleRounds"/> rounds of the step (its round-trip estimate is the median of the last seven rounds); with
/// <c>Sequential</c> every round stays a chain of the session's γ. Either way the text is the target's own.
/// </summary>
public sealed class RttStepTests(TinyTransformerPair tiny, ITestOutputHelper output) : IClassFixture<TinyTransformerPair>
{
    /// <summary>Rounds after the step by which the controller has taken the new shape.</summary>
    public const int SettleRounds = 6;

    private const int Tokens = 320;
    private const int StepAt = 100;
    private const string Prompt = "Once upon a time";
    private static readonly TimeSpan Near = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan Far = TimeSpan.FromMilliseconds(80);
    private static readonly Lazy<ModelPair> Stories = new(() => ModelPair.Load(null, null, needDraft: true, pair: ModelPair.StoriesPair));

    [Fact]
    public async Task Greedy_OneWayDelaySteps5To80Ms_SettlesOnDeeperRoundsWithinSixRounds_TextAsTargetAlone()
    {
        var (report, step) = await RunAsync("rtt-step", sequential: false);
        var depths = report.DraftedPerRound.Take(report.DraftedPerRound.Count - 1).ToArray(); // the last round may be clamped
        var before = Median(depths[Math.Max(0, step - 8)..step]);
        var settled = depths[(step + SettleRounds)..];
        var after = Median(settled);
        var first = Array.FindIndex(depths, step, d => d >= after - 1) - step;
        output.WriteLine($"depth before the step (median of 8 rounds) {before}, after {after}; first round at ≥ {after - 1}: {first} rounds after the step; " +
            $"rounds {report.Rounds}, {report.Tokens.Count} tokens");
        output.WriteLine("depths: " + string.Join(' ', depths.Select((d, i) => i == step ? $"| {d}" : $"{d}")));
        Assert.True(after > before, $"after the step the median depth is {after}, before {before}");
        Assert.InRange(first, 0, SettleRounds);
        Assert.True(settled.Count(d => d > before) >= settled.Length * 0.8, $"{settled.Count(d => d > before)} of {settled.Length} settled rounds deeper than {before}");
    }

    [Fact]
    public async Task Sequential_SameStep_EveryRoundAChainOfGamma_TextAsTargetAlone()
    {
        var (report, _) = await RunAsync("rtt-step-seq", sequential: true);
        Assert.All(report.DraftedPerRound.Take(report.DraftedPerRound.Count - 1), d => Assert.Equal(4, d));
    }

    /// <summary>Generates through the emulated link, stepping its delay; returns the report and the first round after the step.</summary>
    private async Task<(GenerationReport Report, int Step)> RunAsync(string id, bool sequential)
    {
        var settings = new SessionSettings { SessionId = id, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = Tokens, Gamma = 4 };
        var pair = tiny;
        var prompt = pair.Tokenizer.Encode(Prompt);
        var reference = Autoregressive.Generate(pair.Target, prompt, settings.Sampling, settings.Seed, settings.SessionId, Tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = id + "-v" }, pair.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30));
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        link.Configure(new LinkProfile { Delay = Near }, new LinkProfile { Delay = Near });
        await link.StartAsync();
        await using var worker = new DraftWorker(FaultSoak.DeviceOptions(link.Port, id + "-d", id + "-v", TimeSpan.FromSeconds(10)) with { Sequential = sequential }, pair.Draft, log.CreateLogger<DraftWorker>());
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
        var total = 0;
        var step = report.AcceptedPerRound.TakeWhile(a => (total += a + 1) < StepAt).Count() + 1;
        var nearRtt = report.RoundMillis.Take(step).Zip(report.DraftMillis).Select(x => x.First - x.Second).Order().ElementAt(step / 2);
        var farRtt = report.RoundMillis.Skip(step).Zip(report.DraftMillis.Skip(step)).Select(x => x.First - x.Second).Order().ElementAt((int)(report.Rounds - step) / 2);
        output.WriteLine($"{(sequential ? "sequential" : "shape controller")}: {report.Rounds} rounds, step before round {step}; median send-to-verdict {nearRtt:0.0} ms before, {farRtt:0.0} ms after; {report.TokensPerSecond:0.0} tokens/s");
        Assert.True(farRtt >= 2 * Far.TotalMilliseconds, $"after the step a round took {farRtt:0.0} ms: the new delay was not in force");
        return (report, step);
    }

    private static int Median(int[] values) => values.Length == 0 ? 0 : values.Order().ElementAt(values.Length / 2);
}

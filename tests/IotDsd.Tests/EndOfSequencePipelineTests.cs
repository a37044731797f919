using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// End-of-sequence ids through the broker: in every wire mode, and on the verifier-decoding rung, greedy text stops
/// exactly where target-only decoding stops, the stop token is the last one, and the report says why.
/// </summary>
public sealed class EndOfSequencePipelineTests(ITestOutputHelper output)
{
    private const string Prompt = "The meaning of life is";

    [Fact]
    public async Task Greedy_EosMidway_EveryWireModeEqualsGenerate()
    {
        var prompt = TestEnvironment.Tokenizer.Encode(Prompt);
        var free = Autoregressive.Generate(TestEnvironment.Target, prompt, SamplingParams.Greedy, 0, "ref", 200);
        int stop = free[60]; // a byte the text reaches mid-way
        var reference = Autoregressive.Generate(TestEnvironment.Target, prompt, SamplingParams.Greedy, 0, "ref", 200, [stop]);
        Assert.True(reference.Length <= 61 && reference[^1] == stop);

        await using var broker = await EmbeddedBroker.StartAsync();
        await using (var pipeline = await Pipeline.StartAsync(broker.Port))
        {
            foreach (var mode in Enum.GetValues<DecodingMode>())
            {
                var settings = Pipeline.Settings($"eos-{mode}", mode, 0f, 200, seed: 3) with { StopTokens = [stop] };
                var report = await pipeline.Worker.GenerateAsync(prompt, settings, null, CancellationToken.None);
                Assert.Equal(reference, report.Tokens);
                Assert.Equal(StopReason.Eos, report.StopReason);
                output.WriteLine($"{mode}: {report.Tokens.Count} tokens, stop {stop}, {report.Rounds} rounds");
            }

            Assert.Empty(pipeline.Log.Errors);
        }

        // The verifier-decoding rung: the verifier streams tokens itself; the device ends at the stop token.
        await using var streamed = await Pipeline.StartAsync(broker.Port, deviceId: "eos-stream",
            device: o => o with { PinnedLevel = DegradationLevel.VerifierDecoding, StreamTokens = 16 });
        var streamedReport = await streamed.Worker.GenerateAsync(prompt, Pipeline.Settings("eos-stream", DecodingMode.Greedy, 0f, 200, 3) with { StopTokens = [stop] }, null, CancellationToken.None);
        Assert.Equal(reference, streamedReport.Tokens);
        Assert.Equal(StopReason.Eos, streamedReport.StopReason);
        Assert.Empty(streamed.Log.Errors);
    }
}

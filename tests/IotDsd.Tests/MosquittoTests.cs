using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The pipeline through a real Mosquitto child process. Where mosquitto is not installed these tests are skipped with the reason,
/// except under IOTDSD_REQUIRE_MOSQUITTO=1 (CI), where a missing broker fails them.
/// </summary>
public sealed class MosquittoTests(ITestOutputHelper output)
{
    [SkippableFact]
    public async Task Mosquitto_GreedyAndRsr_LosslessAndDeterministic()
    {
        await using var mosquitto = await MosquittoProcess.TryStart();

        const string prompt = "The meaning of life is";
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", 250);
        await using var pipeline = await Pipeline.StartAsync(mosquitto.Port);
        var greedy = await pipeline.GenerateAsync(prompt, DecodingMode.Greedy, 0f, 250, session: "m-greedy");
        Assert.Equal(reference, greedy.Tokens);

        var dssd = await pipeline.GenerateAsync(prompt, DecodingMode.Dssd, 0f, 250, session: "m-dssd");
        Assert.Equal(reference, dssd.Tokens);

        var a = await pipeline.GenerateAsync(prompt, DecodingMode.Rsr, 0.8f, 250, seed: 5, session: "m-rsr");
        var b = await pipeline.GenerateAsync(prompt, DecodingMode.Rsr, 0.8f, 250, seed: 5, session: "m-rsr");
        Assert.Equal(a.Tokens, b.Tokens);
        output.WriteLine($"greedy: {greedy.Rounds} rounds, round p50 {greedy.RoundMillis.Order().ElementAt(greedy.RoundMillis.Count / 2):0.000} ms; rsr acceptance {a.AcceptanceRate:P1}");
        Assert.Empty(pipeline.Log.Errors);
    }

    [SkippableFact]
    public async Task Mosquitto_DiscoveryByRetainedStatus_PicksLiveVerifier()
    {
        await using var mosquitto = await MosquittoProcess.TryStart();

        await using var pipeline = await Pipeline.StartAsync(mosquitto.Port, verifierId: "mosq-verifier", pinVerifier: false);
        var report = await pipeline.GenerateAsync("Never", DecodingMode.Greedy, 0f, 60, session: "disc");
        Assert.Equal("mosq-verifier", report.VerifierId);
        Assert.Equal(60, report.Tokens.Count);
    }
}

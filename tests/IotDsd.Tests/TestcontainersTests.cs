using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Integration tests against Mosquitto in a container started by Testcontainers (image: IOTDSD_MOSQUITTO_IMAGE,
/// default eclipse-mosquitto:2). Without a Docker engine they are skipped with the reason; CI sets
/// IOTDSD_REQUIRE_DOCKER=1 so that they must run there.
/// </summary>
public sealed class TestcontainersTests(ITestOutputHelper output)
{
    [SkippableFact]
    public async Task Container_GreedyAndRsr_LosslessAndDeterministic()
    {
        await using var mosquitto = await MosquittoContainer.TryStart(output);

        const string prompt = "A computer";
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", 200);
        await using var pipeline = await Pipeline.StartAsync(mosquitto.Port, verifierId: "container-verifier");
        var greedy = await pipeline.GenerateAsync(prompt, DecodingMode.Greedy, 0f, 200, session: "c-greedy");
        Assert.Equal(reference, greedy.Tokens);
        Assert.Equal("container-verifier", greedy.VerifierId);
        var a = await pipeline.GenerateAsync(prompt, DecodingMode.Rsr, 0.8f, 200, seed: 9, session: "c-rsr");
        var b = await pipeline.GenerateAsync(prompt, DecodingMode.Rsr, 0.8f, 200, seed: 9, session: "c-rsr");
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Empty(pipeline.Log.Errors);
        output.WriteLine($"greedy {greedy.Rounds} rounds, round p50 {greedy.RoundMillis.Order().ElementAt(greedy.RoundMillis.Count / 2):0.000} ms; rsr acceptance {a.AcceptanceRate:P1}");
    }

    [SkippableFact]
    public async Task Container_Diagnostics_MetricsAndCommandsAnswered()
    {
        await using var mosquitto = await MosquittoContainer.TryStart(output);

        await DiagnosticsTests.RunScenarioAsync(mosquitto.Port, output);
    }
}

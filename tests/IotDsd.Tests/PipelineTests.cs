using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>The whole pipeline through the in-process MQTTnet broker over TCP, with the shipped ONNX models.</summary>
public sealed class PipelineTests(ITestOutputHelper output)
{
    public static readonly TheoryData<string> Prompts = new()
    {
        "The meaning of life is",
        "A computer",
        "Q:\tWhy did the chicken cross the road?\nA:\t",
        "Never",
    };

    [Theory]
    [MemberData(nameof(Prompts))]
    public async Task Greedy_AllModes_ByteIdenticalToTargetOnly(string prompt)
    {
        const int tokens = 240;
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port);
        foreach (var mode in Enum.GetValues<DecodingMode>())
        {
            var report = await pipeline.GenerateAsync(prompt, mode, 0f, tokens, session: $"greedy-{mode}");
            Assert.Equal(reference, report.Tokens);
            Assert.True(report.Rounds < tokens, $"{mode}: {report.Rounds} rounds for {tokens} tokens means nothing was accepted");
            output.WriteLine($"{mode}: acceptance {report.AcceptanceRate:P1}, {report.Rounds} rounds");
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(reference.Select(t => (byte)t).ToArray()));
        Assert.Empty(pipeline.Log.Errors);
    }

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public async Task Sampling_SameSeed_SameTextAndRealisticAcceptance(DecodingMode mode)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port);
        var first = await pipeline.GenerateAsync("The meaning of life is", mode, 0.8f, 300, seed: 11, session: "a");
        var second = await pipeline.GenerateAsync("The meaning of life is", mode, 0.8f, 300, seed: 11, session: "a");
        var other = await pipeline.GenerateAsync("The meaning of life is", mode, 0.8f, 300, seed: 12, session: "a");
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.NotEqual(first.Tokens, other.Tokens);
        Assert.Equal(300, first.Tokens.Count);
        Assert.InRange(first.AcceptanceRate, 0.3, 0.98);
        Assert.True(first.UplinkPayloadBytes > 0 && first.DownlinkPayloadBytes > 0);
        output.WriteLine($"{mode}: acceptance {first.AcceptanceRate:P1}, up {first.UplinkBytesPerToken:0.0} B/token, down {first.DownlinkBytesPerToken:0.0} B/token");
        Assert.Empty(pipeline.Log.Errors);
    }

    [Fact]
    public async Task Rsr_FewProposals_FollowUpsStillExact()
    {
        // The default budget adapts; a tiny prompt and high temperature make the residual small so follow-ups happen.
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port);
        var a = await pipeline.GenerateAsync("x", DecodingMode.Rsr, 1.5f, 400, seed: 3, session: "f");
        var b = await pipeline.GenerateAsync("x", DecodingMode.Rsr, 1.5f, 400, seed: 3, session: "f");
        Assert.Equal(a.Tokens, b.Tokens);
        output.WriteLine($"follow-ups {a.FollowUps}, acceptance {a.AcceptanceRate:P1}");
    }

    [Fact]
    public async Task VerifierReplacedMidRun_DeviceReopensWithPrefix_TextUnchanged()
    {
        const string prompt = "Never";
        const int tokens = 1500;
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var address = new IotDsd.Messaging.Connections.BrokerAddress("127.0.0.1", broker.Port);
        var log = new ErrorLog();
        var options = new IotDsd.Verifier.Hosting.VerifierOptions { Broker = address, VerifierId = "v" };
        var first = new IotDsd.Verifier.Hosting.VerifierService(options, TestEnvironment.Target, log.CreateLogger<IotDsd.Verifier.Hosting.VerifierService>());
        await first.StartAsync(CancellationToken.None);
        await first.Ready;
        await using var worker = new IotDsd.Edge.Drafting.DraftWorker(
            new IotDsd.Edge.Hosting.EdgeOptions { Broker = address, DeviceId = "d", VerifierId = "v", RequestTimeout = TimeSpan.FromMilliseconds(300) },
            TestEnvironment.Draft,
            log.CreateLogger<IotDsd.Edge.Drafting.DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        var settings = new IotDsd.Core.Sessions.SessionSettings { SessionId = "long", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens };
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, CancellationToken.None);
        while (first.Stats.Rounds < 50)
        {
            await Task.Delay(5);
        }

        await first.StopAsync(CancellationToken.None);
        first.Dispose();
        using var second = new IotDsd.Verifier.Hosting.VerifierService(options, TestEnvironment.Target, log.CreateLogger<IotDsd.Verifier.Hosting.VerifierService>());
        await second.StartAsync(CancellationToken.None);
        var report = await run;
        await second.StopAsync(CancellationToken.None);
        Assert.Equal(reference, report.Tokens);
        Assert.True(report.Reopens >= 1, "the replacement verifier never had to rebuild the session");
        output.WriteLine($"reopens {report.Reopens}, retries {report.Retries}, second verifier rounds {second.Stats.Rounds}");
    }
}

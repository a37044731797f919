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
}

using System.Collections.Concurrent;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;
using MQTTnet;
using MQTTnet.Server;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// QoS 1 delivers at least once, and in the field often out of order. Here the broker itself (the in-process MQTTnet
/// server) delivers every IotDsd message a second and a third time, each copy after a random delay of up to 40 ms, so
/// copies land after later messages: opens, rounds, rsr follow-ups, closes, verdicts, error replies and session-opened
/// replies all arrive duplicated and reordered. The text must not change.
/// </summary>
public sealed class DuplicateDeliveryTests(ITestOutputHelper output)
{
    internal static async Task<(int Copies, ConcurrentDictionary<string, int> Types)> DuplicateEverything(EmbeddedBroker broker, int seed)
    {
        var random = new Random(seed);
        var types = new ConcurrentDictionary<string, int>();
        var copies = 0;
        broker.Server.InterceptingPublishAsync += args =>
        {
            var message = args.ApplicationMessage;
            if (!message.Topic.StartsWith("iotdsd/v1/", StringComparison.Ordinal) || message.Topic.EndsWith("/status", StringComparison.Ordinal)
                || message.UserProperties?.Any(p => p.Name == "copy") == true)
            {
                return Task.CompletedTask;
            }

            var decoded = WireCodec.Decode(message.Payload, WireCodec.DefaultMaxPayloadBytes);
            types.AddOrUpdate(decoded.Message?.GetType().Name ?? "undecodable", 1, (_, n) => n + 1);
            int d1, d2;
            lock (random)
            {
                d1 = random.Next(0, 40);
                d2 = random.Next(0, 40);
            }

            foreach (var delay in new[] { d1, d2 })
            {
                var builder = new MqttApplicationMessageBuilder()
                    .WithTopic(message.Topic)
                    .WithPayload(System.Buffers.BuffersExtensions.ToArray(message.Payload))
                    .WithQualityOfServiceLevel(message.QualityOfServiceLevel)
                    .WithUserProperty("copy", "1"u8.ToArray());
                if (message.ResponseTopic is not null)
                {
                    builder.WithResponseTopic(message.ResponseTopic);
                }

                if (message.CorrelationData is not null)
                {
                    builder.WithCorrelationData(message.CorrelationData);
                }

                var copy = builder.Build();
                Interlocked.Increment(ref copies);
                _ = Task.Run(async () =>
                {
                    await Task.Delay(delay);
                    await broker.Server.InjectApplicationMessage(new InjectedMqttApplicationMessage(copy) { SenderClientId = args.ClientId });
                });
            }

            return Task.CompletedTask;
        };
        await Task.CompletedTask;
        return (0, types);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f)]
    [InlineData(DecodingMode.Rsr, 1.2f)]
    [InlineData(DecodingMode.Dssd, 0.8f)]
    [InlineData(DecodingMode.Dsd, 0.8f)]
    public async Task EveryMessageDuplicatedAndReordered_TextUnchanged(DecodingMode mode, float temperature)
    {
        const string prompt = "The meaning of life is";
        const int tokens = 300;
        int[] reference;
        await using (var clean = await EmbeddedBroker.StartAsync())
        await using (var pipeline = await Pipeline.StartAsync(clean.Port))
        {
            reference = [.. (await pipeline.GenerateAsync(prompt, mode, temperature, tokens, seed: 21, session: "dup")).Tokens];
        }

        if (mode == DecodingMode.Greedy)
        {
            Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens), reference);
        }

        await using var broker = await EmbeddedBroker.StartAsync();
        var (_, types) = await DuplicateEverything(broker, seed: 4);
        await using var noisy = await Pipeline.StartAsync(broker.Port);

        // A second generation under the same session id reopens it: stale opens and rounds of the first now arrive late.
        var first = await noisy.GenerateAsync(prompt, mode, temperature, tokens, seed: 21, session: "dup");
        var second = await noisy.GenerateAsync(prompt, mode, temperature, tokens, seed: 21, session: "dup");
        Assert.Equal(reference, first.Tokens);
        Assert.Equal(reference, second.Tokens);
        output.WriteLine($"{mode}: originals by type {string.Join(", ", types.Select(kv => $"{kv.Key}={kv.Value}"))}; verifier duplicates {noisy.Verifier.Stats.Duplicates}");
        foreach (var type in new[] { nameof(OpenSession), nameof(DraftRound), nameof(CloseSession), nameof(SessionOpened), nameof(Verdict) })
        {
            Assert.True(types.GetValueOrDefault(type) > 0, $"no {type} was duplicated");
        }

        if (mode == DecodingMode.Rsr)
        {
            Assert.True(types.GetValueOrDefault(nameof(MoreProposals)) > 0, "no rsr follow-up was duplicated");
        }

        Assert.True(noisy.Verifier.Stats.Duplicates > 0);
        Assert.True(noisy.Log.Errors.Count == 0, string.Join("\n", noisy.Log.Errors));
    }
}

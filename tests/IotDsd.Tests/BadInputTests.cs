using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// Garbage sent to a running verifier by a plain MQTT client: each gets a clear error (a reply on the sender's own
/// reply topic where the sender is identifiable, a counter always), and a real session on the same verifier finishes
/// with the right text.
/// </summary>
public sealed class BadInputTests
{
    private const string Verifier = "bad-input-verifier";

    private static string Rounds(string device) => TopicScheme.VerifierRounds(Verifier, device);

    public static readonly TheoryData<string, byte[], ErrorCode> Cases = new()
    {
        { "random bytes", [0xC1, 0x00, 0xFF, 0x13], ErrorCode.Malformed },
        { "not an envelope", WireCodecTestData.MapPayload(), ErrorCode.Malformed },
        { "empty", [], ErrorCode.Malformed },
        { "unknown version", WireCodecTestData.Envelope(version: 99, type: 2), ErrorCode.UnsupportedVersion },
        { "unknown type", WireCodecTestData.Envelope(version: 1, type: 77), ErrorCode.UnexpectedMessage },
        { "truncated round", WireCodec.Encode(new DraftRound { SessionId = "x", Draft = [1, 2, 3] })[..9], ErrorCode.Malformed },
        { "oversized", new byte[WireCodec.DefaultMaxPayloadBytes + 1], ErrorCode.TooLarge },
        { "verdict sent to a verifier", WireCodec.Encode(new Verdict { SessionId = "x" }), ErrorCode.UnexpectedMessage },
        { "round for no session", WireCodec.Encode(new DraftRound { SessionId = "nobody", Pending = [65], CommittedLength = 1 }), ErrorCode.UnknownSession },
        { "open naming another device", WireCodec.Encode(new OpenSession { SessionId = "x", DeviceId = "someone-else", Epoch = 1, VocabSize = 256, MaxGamma = 4 }), ErrorCode.WrongTopic },
        { "open with wrong vocabulary", WireCodec.Encode(new OpenSession { SessionId = "x", DeviceId = "mallory", Epoch = 1, VocabSize = 50_000, MaxGamma = 4 }), ErrorCode.InvalidRequest },
    };

    [Theory]
    [MemberData(nameof(Cases), DisableDiscoveryEnumeration = true)] // an 8 MiB case: never serialise it at discovery
    public async Task Verifier_BadMessage_ErrorReplyCounterAndOthersUnaffected(string name, byte[] payload, ErrorCode expected)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, deviceId: "honest", verifierId: Verifier, pinVerifier: true);
        await using var mallory = await RawClient.ConnectAsync(broker.Port, "mallory-client", TopicScheme.DeviceReplies("mallory"));
        var good = pipeline.GenerateAsync("The meaning of life is", DecodingMode.Greedy, 0f, 150, session: "honest-session");

        await mallory.PublishAsync(Rounds("mallory"), payload, TopicScheme.DeviceReplies("mallory"), [1, 2, 3, 4, 5, 6, 7, 8]);
        var reply = await mallory.WaitForAsync(m => m.Topic == TopicScheme.DeviceReplies("mallory"));
        var decoded = WireCodec.Decode(reply.Payload);
        var error = Assert.IsType<ErrorReply>(decoded.Message);
        Assert.Equal(expected, error.Code);
        Assert.False(string.IsNullOrWhiteSpace(error.Message), name);
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], reply.Correlation);
        Assert.Equal(1, pipeline.Verifier.Errors[expected]);

        var report = await good;
        Assert.Equal(150, report.Tokens.Count);
        Assert.Equal(0, report.Retries);
    }

    [Fact]
    public async Task Verifier_ResponseTopicOfAnotherDevice_RepliesOnlyToSender()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, deviceId: "victim", verifierId: Verifier, pinVerifier: true);
        await using var mallory = await RawClient.ConnectAsync(broker.Port, "mallory-client", TopicScheme.DeviceReplies("mallory"), TopicScheme.DeviceReplies("victim"));
        var open = WireCodec.Encode(new OpenSession { SessionId = "x", DeviceId = "mallory", Epoch = 1, VocabSize = 256, MaxGamma = 4 });
        await mallory.PublishAsync(Rounds("mallory"), open, TopicScheme.DeviceReplies("victim"));
        var reply = await mallory.WaitForAsync(m => m.Topic == TopicScheme.DeviceReplies("mallory"));
        Assert.Equal(ErrorCode.WrongTopic, Assert.IsType<ErrorReply>(WireCodec.Decode(reply.Payload).Message).Code);
        await Task.Delay(200);
        Assert.DoesNotContain(mallory.Received, m => m.Topic == TopicScheme.DeviceReplies("victim"));
    }

    [Fact]
    public async Task Verifier_RoundClaimingAnotherDevicesSession_Refused()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, deviceId: "victim", verifierId: Verifier, pinVerifier: true);
        var victim = pipeline.GenerateAsync("Never", DecodingMode.Greedy, 0f, 400, session: "shared-name");
        await using var mallory = await RawClient.ConnectAsync(broker.Port, "mallory-client", TopicScheme.DeviceReplies("mallory"));
        var round = WireCodec.Encode(new DraftRound { SessionId = "shared-name", Epoch = 1, Round = 2, Pending = [65], CommittedLength = 6, Draft = [65] });
        await mallory.PublishAsync(Rounds("mallory"), round, TopicScheme.DeviceReplies("mallory"));
        var reply = await mallory.WaitForAsync(m => m.Topic == TopicScheme.DeviceReplies("mallory"));
        Assert.Equal(ErrorCode.UnknownSession, Assert.IsType<ErrorReply>(WireCodec.Decode(reply.Payload).Message).Code);
        Assert.Equal(400, (await victim).Tokens.Count);
    }

    [Fact]
    public async Task Device_GarbageOnReplyTopic_GenerationUnchanged()
    {
        const string prompt = "The meaning of life is";
        var reference = IotDsd.Core.Speculative.Autoregressive.Generate(
            TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), IotDsd.Core.Sampling.SamplingParams.Greedy, 0, "ref", 400);
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, deviceId: "target-device", verifierId: Verifier, pinVerifier: true);
        await using var mallory = await RawClient.ConnectAsync(broker.Port, "mallory-client");
        var run = pipeline.GenerateAsync(prompt, DecodingMode.Greedy, 0f, 400, session: "g");
        var replies = TopicScheme.DeviceReplies("target-device");
        var rng = new Random(5);
        for (var i = 0; i < 50 && !run.IsCompleted; i++)
        {
            var junk = new byte[rng.Next(1, 64)];
            rng.NextBytes(junk);
            await mallory.PublishAsync(replies, i % 2 == 0 ? junk : WireCodec.Encode(new Verdict { SessionId = "s1", Epoch = 1, Round = i, Accepted = 99 }), correlation: junk[..Math.Min(8, junk.Length)]);
        }

        var report = await run;
        Assert.Equal(reference, report.Tokens);
    }
}

/// <summary>Hand-made payloads that no encoder of ours would produce.</summary>
internal static class WireCodecTestData
{
    public static byte[] Envelope(int version, byte type) => [0x93, (byte)version, type, 0x90];

    public static byte[] MapPayload() => [0x81, 0xA1, 0x61, 0x01];
}

using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using IotDsd.Verifier.Limits;

namespace IotDsd.Tests.Security;

/// <summary>
/// Each per-device limit of a running verifier, hit by a plain MQTT client: the refusal comes back as an
/// <see cref="ErrorReply"/> with the limit in its message, the limit's counter moves, and an honest device on the
/// same verifier still gets the right text.
/// </summary>
public sealed class LimitTests
{
    private const string Verifier = "limit-verifier";
    private const string Device = "greedy-device";

    private static readonly VerifierLimits Tight = new()
    {
        MaxGamma = 8, MaxPromptTokens = 32, MaxSessionTokens = 64, MaxSessionsPerDevice = 2,
        RequestsPerSecond = 50, RequestBurst = 20, MaxDeviceMemoryBytes = 2 << 20, BytesPerCachedToken = 16,
    };

    private static OpenSession Open(string session, int maxGamma = 4) =>
        new() { SessionId = session, DeviceId = Device, Epoch = 1, Mode = DecodingMode.Greedy, VocabSize = 256, MaxGamma = maxGamma };

    private static DraftRound Round(string session, int pending, int gamma = 2)
    {
        var tokens = Enumerable.Range(0, pending).Select(i => 65 + (i % 26)).ToArray();
        var digest = PrefixDigest.Empty;
        digest.Append(tokens);
        return new DraftRound { SessionId = session, Epoch = 1, Round = 1, CommittedLength = pending, PrefixDigest = digest.Value, Pending = tokens, Draft = Enumerable.Repeat(66, gamma).ToArray() };
    }

    public static readonly TheoryData<LimitKind> Kinds = new()
    {
        LimitKind.Gamma, LimitKind.SessionsPerDevice, LimitKind.PromptLength, LimitKind.SessionTokens,
        LimitKind.DeviceMemory, LimitKind.RequestRate, LimitKind.PayloadSize,
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Verifier_DeviceExceedsLimit_ErrorReplyCounterAndOthersUnaffected(LimitKind kind)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var limits = kind switch
        {
            LimitKind.DeviceMemory => Tight with { BytesPerCachedToken = 64 << 10, MaxDeviceMemoryBytes = 1 << 20, MaxSessionTokens = 1000, MaxPromptTokens = 100 },
            LimitKind.SessionTokens => Tight with { MaxSessionTokens = 33 },
            LimitKind.RequestRate => Tight with { RequestsPerSecond = 0.01, RequestBurst = 5 },
            _ => Tight,
        };
        var log = new ErrorLog();
        using var verifier = new VerifierService(
            new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = Verifier, Limits = limits, MaxPayloadBytes = 64 << 10 },
            TestEnvironment.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        await using var device = await RawClient.ConnectAsync(broker.Port, "limit-device", TopicScheme.DeviceReplies(Device));
        var rounds = TopicScheme.VerifierRounds(Verifier, Device);
        var sent = 0;
        async Task Send(object message)
        {
            await device.PublishAsync(rounds, WireCodec.Encode(message), TopicScheme.DeviceReplies(Device));
            sent++;
        }

        switch (kind)
        {
            case LimitKind.Gamma:
                await Send(Open("g", maxGamma: 9));
                break;
            case LimitKind.SessionsPerDevice:
                await Send(Open("s1"));
                await Send(Open("s2"));
                await Send(Open("s3"));
                break;
            case LimitKind.PromptLength:
                await Send(Open("p"));
                await Send(Round("p", pending: 33));
                break;
            case LimitKind.SessionTokens:
                await Send(Open("t"));
                await Send(Round("t", pending: 30, gamma: 4));
                break;
            case LimitKind.DeviceMemory:
                await Send(Open("m"));
                await Send(Round("m", pending: 20));
                break;
            case LimitKind.RequestRate:
                for (var i = 0; i < 30; i++)
                {
                    await Send(Open($"r{i % 2}"));
                }

                break;
            default:
                await device.PublishAsync(rounds, new byte[(64 << 10) + 1], TopicScheme.DeviceReplies(Device));
                break;
        }

        var reply = await device.WaitForAsync(m => WireCodec.Decode(m.Payload).Message is ErrorReply);
        var error = (ErrorReply)WireCodec.Decode(reply.Payload).Message!;
        if (kind == LimitKind.RequestRate)
        {
            // The first refusal answers while later requests are still being judged: read the counters once all are in.
            await ConfinementTests.WaitUntil(() => verifier.Limits.Counters[kind] >= sent - 5);
        }

        Assert.True(verifier.Limits.Counters[kind] >= 1, $"{kind} counter is {verifier.Limits.Counters[kind]}; error was {error.Code}: {error.Message}");
        Assert.Equal(verifier.Limits.Counters[kind], verifier.Limits.Counters.Total);
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
        if (kind == LimitKind.RequestRate)
        {
            // Over the rate, refusals are counted always but answered only within the error-reply budget: no reply flood.
            Assert.Equal(ErrorCode.Overloaded, error.Code);
            await Task.Delay(300);
            Assert.InRange(device.Received.Count(m => WireCodec.Decode(m.Payload).Message is ErrorReply { Code: ErrorCode.Overloaded }), 1, limits.ErrorReplyBurst);
            Assert.Equal(sent - 5, verifier.Limits.Counters[kind]);
        }

        // An honest device on the same verifier is untouched.
        await using var honest = await Pipeline.StartAsync(broker.Port, deviceId: "honest-device", verifierId: "honest-verifier", pinVerifier: true);
        var report = await honest.GenerateAsync("The meaning of life is", DecodingMode.Greedy, 0f, 40, session: "honest");
        Assert.Equal(40, report.Tokens.Count);
    }
}

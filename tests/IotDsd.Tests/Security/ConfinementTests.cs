using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Messaging.Connections;
using MQTTnet;
using Xunit.Abstractions;

namespace IotDsd.Tests.Security;

/// <summary>Starts one production-profile Mosquitto for the class; null where mosquitto is not installed.</summary>
public sealed class SecureBrokerFixture : IAsyncLifetime
{
    public SecureBroker? Broker { get; private set; }

    /// <summary>The broker; skips the test with the reason where mosquitto is not installed (the fixture has already
    /// failed where IOTDSD_REQUIRE_MOSQUITTO=1).</summary>
    public SecureBroker RequireBroker() =>
        Broker ?? throw new SkipException($"{Infrastructure.MosquittoProcess.MissingReason}; IOTDSD_REQUIRE_MOSQUITTO=1 makes this a failure");

    public async Task InitializeAsync() => Broker = await SecureBroker.TryStart();

    public async Task DisposeAsync()
    {
        if (Broker is not null)
        {
            await Broker.DisposeAsync();
        }
    }
}

/// <summary>
/// The ACL profile (<c>broker/acl</c>) under a real Mosquitto with the production configuration: each device is
/// confined to its own topics, no device can pose as a verifier, and the verifier refuses claims that do not match
/// the topic. Every test also proves the permitted path works, so a broker that denies everything fails it.
/// </summary>
public sealed class ConfinementTests(SecureBrokerFixture fixture, ITestOutputHelper output) : IClassFixture<SecureBrokerFixture>
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(10);

    private Task<SecureClient> CertClient(SecureBroker broker, string identity) =>
        SecureClient.ConnectAsync(new MqttSettings { Broker = broker.Address(broker.CertPort), ClientId = identity, Tls = broker.Tls(identity) });

    private Task<SecureClient> PasswordClient(SecureBroker broker, string identity) =>
        SecureClient.ConnectAsync(new MqttSettings
        {
            Broker = broker.Address(broker.PasswordPort), ClientId = identity, Username = identity, Password = SecureBroker.Password(identity), Tls = broker.Tls(),
        });

    [SkippableFact]
    public async Task Acl_DevicePublishesIntoAnotherDevicesTopics_NotAuthorizedAndNothingDelivered()
    {
        var broker = fixture.RequireBroker();

        await using var victim = await PasswordClient(broker, "dev-b");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await victim.SubscribeAsync(TopicScheme.DeviceReplies("dev-b")));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await victim.SubscribeAsync($"{TopicScheme.Root}/devices/dev-b/cmd"));
        await using var verifier = await CertClient(broker, "verifier-1");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await verifier.SubscribeAsync(TopicScheme.VerifierRoundsFilter("verifier-1")));
        await using var mallory = await CertClient(broker, "mallory");

        string[] forbidden =
        [
            TopicScheme.DeviceReplies("dev-b"),
            TopicScheme.DeviceStatus("dev-b"),
            $"{TopicScheme.Root}/devices/dev-b/cmd",
            $"{TopicScheme.Root}/devices/dev-b/metrics",
            TopicScheme.VerifierRounds("verifier-1", "dev-b"),
        ];
        foreach (var topic in forbidden)
        {
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await mallory.PublishAsync(topic, [1, 2, 3]));
        }

        // Permitted: mallory's own rounds topic, and a verifier's reply to dev-b.
        Assert.Equal(MqttClientPublishReasonCode.Success, await mallory.PublishAsync(TopicScheme.VerifierRounds("verifier-1", "mallory"), [9]));
        Assert.Equal(MqttClientPublishReasonCode.Success, await verifier.PublishAsync(TopicScheme.DeviceReplies("dev-b"), [7]));
        await WaitUntil(() => victim.Received.Count >= 1 && verifier.Received.Count >= 1);
        Assert.Equal([(TopicScheme.DeviceReplies("dev-b"), new byte[] { 7 })], victim.Received.Select(m => (m.Topic, m.Payload)));
        Assert.Equal([TopicScheme.VerifierRounds("verifier-1", "mallory")], verifier.Received.Select(m => m.Topic));
    }

    [SkippableFact]
    public async Task Acl_DeviceSubscribesToAnotherDevicesTopics_NothingDelivered()
    {
        var broker = fixture.RequireBroker();

        // dev-b's retained presence exists before mallory subscribes.
        await using var victim = await CertClient(broker, "dev-b");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await victim.SubscribeAsync(TopicScheme.DeviceReplies("dev-b")));
        Assert.Equal(MqttClientPublishReasonCode.NoMatchingSubscribers, await victim.PublishAsync(TopicScheme.DeviceStatus("dev-b"), "online"u8.ToArray(), retain: true));

        // Mosquitto 2.0 grants these SUBACKs and checks read access on every message it would deliver (and on retained
        // ones), so what counts is that nothing arrives.
        await using var mallory = await PasswordClient(broker, "mallory");
        string[] filters =
        [
            TopicScheme.DeviceReplies("dev-b"),
            $"{TopicScheme.Root}/devices/dev-b/cmd",
            TopicScheme.DeviceStatus("dev-b"),
            TopicScheme.VerifierRounds("verifier-1", "dev-b"),
            TopicScheme.VerifierRoundsFilter("verifier-1"),
            $"{TopicScheme.Root}/devices/+/replies",
            $"{TopicScheme.Root}/devices/+/status",
            "#",
        ];
        foreach (var filter in filters)
        {
            output.WriteLine($"subscribe {filter}: {await mallory.SubscribeAsync(filter)}");
        }

        await using var verifier = await CertClient(broker, "verifier-1");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await verifier.SubscribeAsync(TopicScheme.VerifierRoundsFilter("verifier-1")));
        Assert.Equal(MqttClientPublishReasonCode.Success, await victim.PublishAsync(TopicScheme.VerifierRounds("verifier-1", "dev-b"), [1]));
        Assert.Equal(MqttClientPublishReasonCode.Success, await verifier.PublishAsync(TopicScheme.DeviceReplies("dev-b"), [2]));
        Assert.Equal(MqttClientPublishReasonCode.Success, await verifier.PublishAsync(TopicScheme.DeviceReplies("mallory"), [3]));
        await WaitUntil(() => victim.Received.Count >= 1 && verifier.Received.Count >= 1 && mallory.Received.Any(m => m.Topic == TopicScheme.DeviceReplies("mallory")));
        await Task.Delay(200);
        Assert.Equal([TopicScheme.DeviceReplies("mallory")], mallory.Received.Select(m => m.Topic).Distinct());
        await victim.PublishAsync(TopicScheme.DeviceStatus("dev-b"), [], retain: true); // clear the retained presence
    }

    [SkippableFact]
    public async Task Acl_DevicePostsVerifierStatus_NotAuthorizedAndDiscoverySeesOnlyRealVerifiers()
    {
        var broker = fixture.RequireBroker();

        await using var mallory = await CertClient(broker, "mallory");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await mallory.PublishAsync(TopicScheme.VerifierStatus("verifier-1"), "offline"u8.ToArray(), retain: true));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await mallory.PublishAsync(TopicScheme.VerifierStatus("mallory"), "online"u8.ToArray(), retain: true));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await mallory.PublishAsync(TopicScheme.VerifierStatus("verifier-2"), "online"u8.ToArray(), retain: true));

        // A verifier listed in the ACL (added by credentials.sh) may post its own status, and only its own.
        await using var verifier2 = await PasswordClient(broker, "verifier-2");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await verifier2.PublishAsync(TopicScheme.VerifierStatus("verifier-1"), "offline"u8.ToArray(), retain: true));
        Assert.Equal(MqttClientPublishReasonCode.NoMatchingSubscribers, await verifier2.PublishAsync(TopicScheme.VerifierStatus("verifier-2"), "online"u8.ToArray(), retain: true));

        await using var observer = await CertClient(broker, "dev-a");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await observer.SubscribeAsync(TopicScheme.AllVerifierStatus));
        await WaitUntil(() => !observer.Received.IsEmpty);
        await Task.Delay(200);
        Assert.Equal([TopicScheme.VerifierStatus("verifier-2")], observer.Received.Select(m => m.Topic).Distinct());
        Assert.Equal(MqttClientPublishReasonCode.Success, await verifier2.PublishAsync(TopicScheme.VerifierStatus("verifier-2"), [], retain: true));
    }

    [SkippableFact]
    public async Task Verifier_ConfinedDeviceClaimsAnotherDevice_RefusedWithWrongTopic()
    {
        var broker = fixture.RequireBroker();

        await using var secure = await SecurePipeline.StartAsync(broker);
        var honest = secure.GenerateAsync("dev-a", "The meaning of life is", 120, "honest");

        await using var mallory = await CertClient(broker, "mallory");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await mallory.SubscribeAsync(TopicScheme.DeviceReplies("mallory")));
        var rounds = TopicScheme.VerifierRounds("verifier-1", "mallory");
        var open = WireCodec.Encode(new OpenSession { SessionId = "honest", DeviceId = "dev-a", Epoch = 9, VocabSize = 256, MaxGamma = 4 });
        Assert.Equal(MqttClientPublishReasonCode.Success, await mallory.PublishAsync(rounds, open, responseTopic: TopicScheme.DeviceReplies("mallory")));
        var round = WireCodec.Encode(new DraftRound { SessionId = "honest", Epoch = 1, Round = 3, CommittedLength = 30, Pending = [65], Draft = [66] });
        Assert.Equal(MqttClientPublishReasonCode.Success, await mallory.PublishAsync(rounds, round, responseTopic: TopicScheme.DeviceReplies("mallory")));
        await WaitUntil(() => mallory.Received.Count >= 2);
        var codes = mallory.Received.Select(m => Assert.IsType<ErrorReply>(WireCodec.Decode(m.Payload).Message).Code).ToList();
        Assert.Equal([ErrorCode.WrongTopic, ErrorCode.UnknownSession], codes);

        var report = await honest;
        Assert.Equal(secure.Reference("The meaning of life is", 120), report.Tokens);
    }

    internal static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Settle;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 10 s");
            await Task.Delay(10);
        }
    }
}

using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using MQTTnet;

namespace IotDsd.Tests.Security;

/// <summary>
/// broker/README.md's production steps, in order, in a scratch directory standing for <c>/etc/mosquitto/iotdsd/</c>:
/// <c>credentials.sh ca</c> alone is enough for Mosquitto to start with <c>mosquitto-prod.conf</c>; after the
/// verifier, client and password steps, the identities they made connect and publish where the ACL lets them.
/// </summary>
public sealed class ProductionStepsTests
{
    [SkippableFact]
    public async Task CredentialsScript_DocumentedSteps_ProductionProfileStartsAfterCaAndServesTheIdentities()
    {
        if (MosquittoProcess.Binary is not { } binary)
        {
            Assert.False(MosquittoProcess.Required, "IOTDSD_REQUIRE_MOSQUITTO=1 but no mosquitto binary was found (apt-get install mosquitto)");
            throw new SkipException("mosquitto is not installed");
        }

        var dir = Directory.CreateTempSubdirectory("iotdsd-prod-steps-").FullName;
        try
        {
            await SecureBroker.CredentialsAsync("ca", dir, "broker.example.net");
            foreach (var file in (string[])["ca.crt", "server.crt", "server.key", "acl", "passwd"])
                Assert.True(File.Exists(Path.Combine(dir, file)), $"credentials.sh ca did not write {file}");
            Assert.Equal(await File.ReadAllTextAsync(Path.Combine(SecureBroker.RepoRoot, "broker", "acl")), await File.ReadAllTextAsync(Path.Combine(dir, "acl")));
            Assert.Equal(0, new FileInfo(Path.Combine(dir, "passwd")).Length);
            await using (var first = await SecureBroker.StartProfileAsync(binary, dir, ownsDir: false))
            {
                // Up, and still the production profile: nobody gets in without credentials.
                string refusal;
                try
                {
                    await using var anonymous = await SecureClient.ConnectAsync(new MqttSettings { Broker = first.Address(first.PasswordPort), ClientId = "nobody", Tls = first.Tls() });
                    refusal = anonymous.ConnectResult!.ResultCode.ToString();
                }
                catch (MQTTnet.Adapter.MqttConnectingFailedException e)
                {
                    refusal = e.Message;
                }

                Assert.Contains(nameof(MqttClientConnectResultCode.NotAuthorized), refusal, StringComparison.Ordinal);
            }

            await SecureBroker.CredentialsAsync("verifier", dir, "verifier-1");
            await SecureBroker.CredentialsAsync("client", dir, "verifier-1");
            await SecureBroker.CredentialsAsync("client", dir, "dev-17");
            await SecureBroker.CredentialsAsync(new Dictionary<string, string> { ["IOTDSD_NEW_PASSWORD"] = "pw-dev-18" }, "password", dir, "dev-18");
            Assert.Equal(await File.ReadAllTextAsync(Path.Combine(SecureBroker.RepoRoot, "broker", "acl")), await File.ReadAllTextAsync(Path.Combine(dir, "acl")));

            await using var broker = await SecureBroker.StartProfileAsync(binary, dir, ownsDir: false);
            await using var verifier = await SecureClient.ConnectAsync(new MqttSettings { Broker = broker.Address(broker.CertPort), ClientId = "verifier-1", Tls = broker.Tls("verifier-1") });
            await using var dev17 = await SecureClient.ConnectAsync(new MqttSettings { Broker = broker.Address(broker.CertPort), ClientId = "dev-17", Tls = broker.Tls("dev-17") });
            await using var dev18 = await SecureClient.ConnectAsync(new MqttSettings
            {
                Broker = broker.Address(broker.PasswordPort), ClientId = "dev-18", Username = "dev-18", Password = "pw-dev-18", Tls = broker.Tls(),
            });
            foreach (var client in (SecureClient[])[verifier, dev17, dev18])
                Assert.Equal(MqttClientConnectResultCode.Success, client.ConnectResult!.ResultCode);
            Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await verifier.SubscribeAsync(TopicScheme.VerifierRoundsFilter("verifier-1")));
            Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await dev17.SubscribeAsync(TopicScheme.VerifierStatus("verifier-1")));
            Assert.Equal(MqttClientPublishReasonCode.Success, await verifier.PublishAsync(TopicScheme.VerifierStatus("verifier-1"), [1]));
            Assert.Equal(MqttClientPublishReasonCode.Success, await dev17.PublishAsync(TopicScheme.VerifierRounds("verifier-1", "dev-17"), [1]));
            Assert.Equal(MqttClientPublishReasonCode.Success, await dev18.PublishAsync(TopicScheme.VerifierRounds("verifier-1", "dev-18"), [1]));
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, await dev18.PublishAsync(TopicScheme.VerifierRounds("verifier-1", "dev-17"), [1]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

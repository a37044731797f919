using System.Diagnostics;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;

namespace IotDsd.Tests;

/// <summary>
/// <c>Verifier:WillDelayS</c>: the broker publishes a lost verifier's offline will after that many seconds, which is
/// when devices fail over. Two verifiers lose their links at once; the one with no delay is offline at once, the
/// other not yet.
/// </summary>
public sealed class WillDelayTests
{
    [SkippableFact]
    public async Task Mosquitto_VerifiersLinksCut_OfflineWillFollowsEachOnesDelay()
    {
        // Mosquitto honours the will delay; the in-process MQTTnet broker publishes every will at once.
        await using var broker = await MosquittoProcess.TryStart();

        await using var nowLink = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await using var lateLink = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await nowLink.StartAsync();
        await lateLink.StartAsync();
        await using var watcher = await RawClient.ConnectAsync(broker.Port, "will-watcher", $"{TopicScheme.Root}/verifiers/+/status");
        var log = new ErrorLog();
        using var now = new VerifierService(
            new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", nowLink.Port), VerifierId = "v-now", WillDelay = TimeSpan.Zero },
            TestEnvironment.Target,
            log.CreateLogger<VerifierService>());
        using var late = new VerifierService(
            new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", lateLink.Port), VerifierId = "v-late", WillDelay = TimeSpan.FromSeconds(60) },
            TestEnvironment.Target,
            log.CreateLogger<VerifierService>());
        await now.StartAsync(CancellationToken.None);
        await late.StartAsync(CancellationToken.None);
        await now.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        await late.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        await watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload) is { State: "online", Id: "v-late" });

        // Both links go dead without a DISCONNECT, as when a machine loses power, and stay dead.
        var cut = Stopwatch.StartNew();
        nowLink.Cut();
        lateLink.Cut();
        await watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload) is { State: "offline", Id: "v-now" });
        var offlineAfter = cut.Elapsed;
        Assert.True(offlineAfter < TimeSpan.FromSeconds(3), $"v-now's will came {offlineAfter.TotalSeconds:0.0} s after the cut (delay 0, default 5)");
        await Task.Delay(500);
        Assert.DoesNotContain(watcher.Received, m => PresencePayload.TryParse(m.Payload) is { State: "offline", Id: "v-late" });

        await now.StopAsync(CancellationToken.None);
        await late.StopAsync(CancellationToken.None);
    }

    [Fact]
    public void Options_WillDelayOutOfRange_RefusedWithReason()
    {
        var options = new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", 1883), WillDelay = TimeSpan.FromMilliseconds(1500) };
        Assert.Contains("will delay must be whole seconds", options.Validate(), StringComparison.Ordinal);
        Assert.Contains("will delay", (options with { WillDelay = TimeSpan.FromHours(2) }).Validate(), StringComparison.Ordinal);
        Assert.Null((options with { WillDelay = TimeSpan.Zero }).Validate());
    }
}

using IotDsd.Contracts.Topics;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;

namespace IotDsd.Tests;

/// <summary>
/// The retained birth's counters across reconnects and restarts: the connection number keeps rising over restarts
/// that share a state directory, and the boot number rises only on a restart.
/// </summary>
public sealed class PresenceSequenceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("iotdsd-presence-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Open_SameDirectoryAgain_ContinuesConnectionsAndCountsBoot()
    {
        var log = new ErrorLog();
        var first = PresenceSequence.Open(_dir, "device", "d1", log.CreateLogger("p"));
        Assert.Equal((1, 0), (first.Boot, first.Connection));
        Assert.Equal(1, first.Next());
        Assert.Equal(2, first.Next());

        var second = PresenceSequence.Open(_dir, "device", "d1", log.CreateLogger("p"));
        Assert.Equal((2, 2), (second.Boot, second.Connection));
        Assert.Equal(3, second.Next());
        Assert.Equal(1, PresenceSequence.Open(_dir, "verifier", "d1", log.CreateLogger("p")).Boot); // per role and id
        Assert.Empty(log.Entries);
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("")]
    [InlineData("{\"boot\":-3,\"connection\":5}")]
    [InlineData("{\"connection\":5}")]
    [InlineData("null")]
    public void Open_CorruptFile_WarnsKeepsItAsideAndStartsFresh(string content)
    {
        var path = Path.Combine(_dir, "device-d2.presence.json");
        File.WriteAllText(path, content);
        var log = new ErrorLog();
        var sequence = PresenceSequence.Open(_dir, "device", "d2", log.CreateLogger("p"));
        Assert.Equal((1, 0), (sequence.Boot, sequence.Connection));
        Assert.Equal(1, sequence.Next());
        var warning = Assert.Single(log.Entries);
        Assert.StartsWith("Warning", warning, StringComparison.Ordinal);
        Assert.Contains("corrupt", warning, StringComparison.Ordinal);
        Assert.Equal(content, File.ReadAllText(path + ".corrupt"));
        Assert.Equal(2, PresenceSequence.Open(_dir, "device", "d2", log.CreateLogger("p")).Boot);
    }

    [Fact]
    public void Open_DirectoryCannotBeWritten_WarnsAndCountsInMemory()
    {
        var notADirectory = Path.Combine(_dir, "file");
        File.WriteAllText(notADirectory, "x");
        var log = new ErrorLog();
        var sequence = PresenceSequence.Open(notADirectory, "device", "d3", log.CreateLogger("p"));
        Assert.Equal(1, sequence.Next());
        Assert.Equal(2, sequence.Next());
        var warning = Assert.Single(log.Entries); // once, not on every connect
        Assert.Contains("cannot be saved", warning, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DraftWorker_ReconnectThenRestartWithSameStateDir_ConnectionRisesBootOnlyOnRestart()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await link.StartAsync();
        await using var watcher = await RawClient.ConnectAsync(broker.Port, "presence-watcher", TopicScheme.DeviceStatus("pd"));
        var log = new ErrorLog();
        DraftWorker Worker() => new(
            new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", link.Port), DeviceId = "pd", StateDirectory = _dir, ReconnectMaxDelay = TimeSpan.FromMilliseconds(200) },
            TestEnvironment.Draft,
            log.CreateLogger<DraftWorker>());

        await using (var first = Worker())
        {
            await first.StartAsync(CancellationToken.None);
            await WaitForBirthAsync(watcher, boot: 1, connection: 1);
            link.Cut();
            link.Restore();
            await WaitForBirthAsync(watcher, boot: 1, connection: 2);
        }

        await using (var second = Worker())
        {
            await second.StartAsync(CancellationToken.None);
            await WaitForBirthAsync(watcher, boot: 2, connection: 3);
        }

        var will = await watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload) is { State: "offline", Boot: 2 });
        Assert.NotNull(will.Payload);
    }

    [Fact]
    public async Task Verifier_RestartWithStateDirectory_ContinuesCounters()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var watcher = await RawClient.ConnectAsync(broker.Port, "presence-watcher", TopicScheme.VerifierStatus("pv"));
        var log = new ErrorLog();
        for (var boot = 1; boot <= 2; boot++)
        {
            using var verifier = new VerifierService(
                new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = "pv", StateDirectory = _dir },
                TestEnvironment.Target,
                log.CreateLogger<VerifierService>());
            await verifier.StartAsync(CancellationToken.None);
            await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30));
            await WaitForBirthAsync(watcher, boot, connection: boot);
            await verifier.StopAsync(CancellationToken.None);
        }

        Assert.Empty(log.Errors);
    }

    private static Task WaitForBirthAsync(RawClient watcher, long boot, long connection) =>
        watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload) is { State: "online" } p && p.Boot == boot && p.Connection == connection);
}

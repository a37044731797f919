using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>New sessions spread by load over several verifiers on one broker (embedded and Mosquitto).</summary>
public sealed class LoadPlacementTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = TestEnvironment.Tokenizer.Encode("It was a dark");

    private static async Task<List<VerifierService>> StartVerifiersAsync(int port, ErrorLog log, params VerifierOptions[] options)
    {
        var started = new List<VerifierService>();
        foreach (var o in options)
        {
            var v = new VerifierService(o with { Broker = new BrokerAddress("127.0.0.1", port) }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
            await v.StartAsync(CancellationToken.None);
            await v.Ready.WaitAsync(TimeSpan.FromSeconds(20));
            started.Add(v);
        }

        return started;
    }

    private static async Task StopAsync(List<VerifierService> verifiers)
    {
        foreach (var v in verifiers)
        {
            await v.StopAsync(CancellationToken.None);
            v.Dispose();
        }
    }

    private static VerifierOptions Options(string id, int maxSessions = 10_000, int refreshMs = 200) =>
        new() { Broker = new BrokerAddress("127.0.0.1", 1), VerifierId = id, MaxSessions = maxSessions, LoadRefresh = TimeSpan.FromMilliseconds(refreshMs) };

    /// <summary>Runs one greedy generation per device, all at once; returns the verifier each landed on.</summary>
    private static async Task<string[]> BurstAsync(int port, ErrorLog log, int devices, int maxTokens, string prefix)
    {
        var reference = Autoregressive.Generate(TestEnvironment.Target, Prompt, SamplingParams.Greedy, 1, "ref", maxTokens);
        return await Task.WhenAll(Enumerable.Range(0, devices).Select(async i =>
        {
            await using var worker = new DraftWorker(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", port), DeviceId = $"{prefix}{i}" }, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
            await worker.StartAsync(CancellationToken.None);
            var settings = new SessionSettings { SessionId = $"{prefix}-s{i}", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = maxTokens, Gamma = 4 };
            var report = await worker.GenerateAsync(Prompt, settings, null, CancellationToken.None);
            Assert.Equal(reference, report.Tokens);
            return report.VerifierId;
        }));
    }

    /// <summary>Opens <paramref name="count"/> sessions on <paramref name="verifier"/> from a raw device and leaves them held.</summary>
    private static async Task<RawClient> HoldSessionsAsync(int port, string verifier, string device, int count)
    {
        var raw = await RawClient.ConnectAsync(port, $"raw-{device}", TopicScheme.DeviceReplies(device));
        for (var i = 0; i < count; i++)
        {
            using var session = new DraftSession(TestEnvironment.Draft, new SessionSettings { SessionId = $"held{i}", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = 50, Gamma = 4 }, Prompt);
            await raw.PublishAsync(TopicScheme.VerifierRounds(verifier, device), WireCodec.Encode(session.OpenRequest(device)), TopicScheme.DeviceReplies(device), [(byte)i, 0, 0, 0, 0, 0, 0, 0]);
        }

        await raw.WaitForAsync(_ => raw.Received.Count(m => WireCodec.Decode(m.Payload).Message is SessionOpened) >= count);
        return raw;
    }

    /// <summary>Waits until the retained status of <paramref name="verifier"/> on the broker carries at least <paramref name="sessions"/>.</summary>
    private static async Task<VerifierLoad> WaitForPublishedLoadAsync(int port, string verifier, int sessions)
    {
        await using var watcher = await RawClient.ConnectAsync(port, $"watch-{verifier}", TopicScheme.VerifierStatus(verifier));
        var status = await watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload)?.Load?.Sessions >= sessions);
        return PresencePayload.TryParse(status.Payload)!.Load!;
    }

    [Fact]
    public async Task Verifier_SessionCountJumps_PublishedAtOnceNotAtTheNextTick()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        // Its reporter's first tick comes 6 s after the start: only the batch that shows the jump publishes before it.
        var verifiers = await StartVerifiersAsync(broker.Port, log, Options("v-jump", refreshMs: 60_000));
        var started = Stopwatch.StartNew();
        try
        {
            await using var watcher = await RawClient.ConnectAsync(broker.Port, "watch-v-jump", TopicScheme.VerifierStatus("v-jump"));
            await using var holder = await HoldSessionsAsync(broker.Port, "v-jump", "holder-j", 6);
            // Each publish needs a move of two sessions since the last one, so at least five of the six are shown.
            VerifierLoad? published = null;
            while (published is null && started.Elapsed < TimeSpan.FromSeconds(5))
            {
                published = watcher.Received.Select(m => PresencePayload.TryParse(m.Payload)?.Load).LastOrDefault(l => l?.Sessions >= 5);
                await Task.Delay(10);
            }

            Assert.True(published is not null, $"no status with five sessions within 5 s of the start ({verifiers[0].SessionCount} held)");
            Assert.InRange(published.Sessions, 5, 6);
            Assert.Empty(log.Entries);
        }
        finally
        {
            await StopAsync(verifiers);
        }
    }

    [Fact]
    public async Task Verifiers_OneHoldsManySessions_NewSessionsGoToTheLessLoaded()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        var verifiers = await StartVerifiersAsync(broker.Port, log, Options("v-a"), Options("v-b"), Options("v-c"));
        try
        {
            await using var holder = await HoldSessionsAsync(broker.Port, "v-a", "holder", 10);
            var published = await WaitForPublishedLoadAsync(broker.Port, "v-a", 10);
            Assert.True(published.Score >= 10, $"score {published.Score}");
            var used = await BurstAsync(broker.Port, log, 12, 80, "busy");
            output.WriteLine(string.Join(", ", used.GroupBy(v => v).Select(g => $"{g.Key}: {g.Count()}")));
            Assert.InRange(used.Count(v => v == "v-a"), 0, 1); // ten sessions above the others: past the cut-off at first
            Assert.Contains("v-b", used);
            Assert.Contains("v-c", used);
            Assert.Equal(10, verifiers[0].SessionCount);
            Assert.Empty(log.Entries);
        }
        finally
        {
            await StopAsync(verifiers);
        }
    }

    [Fact]
    public async Task Verifiers_FullOneStillLooksIdle_RefusedOpenMovesToAnother()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        // v-small's status is refreshed only every 60 s, and one open is below the jump (2 sessions) that publishes
        // at once: it still says idle when it is already full.
        var verifiers = await StartVerifiersAsync(broker.Port, log, Options("v-small", maxSessions: 1, refreshMs: 60_000), Options("v-big"));
        try
        {
            await using var small = await HoldSessionsAsync(broker.Port, "v-small", "holder-s", 1);
            await using var big = await HoldSessionsAsync(broker.Port, "v-big", "holder-b", 6);
            await WaitForPublishedLoadAsync(broker.Port, "v-big", 6);
            Assert.Equal(0, verifiers[0].Load.Sessions);
            var used = await BurstAsync(broker.Port, log, 3, 60, "moved");
            Assert.All(used, v => Assert.Equal("v-big", v));
            Assert.True(verifiers[0].Errors.Total >= 3, "v-small never refused");
            Assert.Empty(log.Errors);
        }
        finally
        {
            await StopAsync(verifiers);
        }
    }

    [SkippableFact]
    public async Task Mosquitto_BurstOfDevicesOnThreeIdleVerifiers_EndsBalancedAndExact()
    {
        await using var mosquitto = await MosquittoProcess.TryStart();

        var log = new ErrorLog();
        var verifiers = await StartVerifiersAsync(mosquitto.Port, log, Options("m-a"), Options("m-b"), Options("m-c"));
        try
        {
            var used = await BurstAsync(mosquitto.Port, log, 24, 120, "burst");
            var split = verifiers.Select(v => used.Count(u => u == v.VerifierId)).ToArray();
            output.WriteLine(string.Join(", ", split));
            Assert.All(split, n => Assert.InRange(n, 4, 13));
            Assert.Empty(log.Entries);
        }
        finally
        {
            await StopAsync(verifiers);
        }
    }
}

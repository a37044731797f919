using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>The degradation ladder, saved sessions, and a half-open link under a running generation.</summary>
public sealed class ResilienceTests(ITestOutputHelper output)
{
    private sealed class ManualClock : TimeProvider
    {
        public long Now { get; set; }

        public override long GetTimestamp() => Now;

        public override long TimestampFrequency => 1000;
    }

    [Fact]
    public void Ladder_FailuresLinkLossAndSuccesses_StepsAndTimesEachLevel()
    {
        var clock = new ManualClock();
        var ladder = new DegradationLadder(gamma: 8, adaptGamma: true, climbAfter: 2, time: clock);
        Assert.Equal(8, ladder.Gamma);
        clock.Now = 100;
        ladder.Failure();
        Assert.Equal((DegradationLevel.ReducedGamma, 4), (ladder.Level, ladder.Gamma));
        ladder.Failure();
        ladder.Failure();
        ladder.Failure(); // bottom of the lossless rungs: stays there
        Assert.Equal((DegradationLevel.VerifierDecoding, 0), (ladder.Level, ladder.Gamma));
        clock.Now = 300;
        ladder.LinkDown();
        Assert.True(ladder.IsLossy);
        clock.Now = 1300;
        ladder.LinkUp();
        Assert.Equal(DegradationLevel.VerifierDecoding, ladder.Level);
        ladder.Success();
        ladder.Success();
        Assert.Equal(DegradationLevel.GammaOne, ladder.Level);
        var times = ladder.TimeAtLevel();
        Assert.Equal(TimeSpan.FromMilliseconds(100), times[DegradationLevel.Normal]);
        Assert.Equal(TimeSpan.FromMilliseconds(1000), times[DegradationLevel.Offline]);
        Assert.Equal(TimeSpan.FromMilliseconds(200), times[DegradationLevel.VerifierDecoding]);
    }

    [Fact]
    public void Ladder_SamplingWithoutAdaptation_KeepsGammaButStillFlagsOffline()
    {
        var ladder = new DegradationLadder(gamma: 4, adaptGamma: false);
        ladder.Failure();
        Assert.Equal((DegradationLevel.Normal, 4), (ladder.Level, ladder.Gamma));
        ladder.LinkDown();
        Assert.Equal(DegradationLevel.Offline, ladder.Level);
        Assert.Equal("offline-unverified", DegradationLadder.Name(ladder.Level));
    }

    [Fact]
    public void SessionStore_CorruptOrForeignFile_ClearErrorNothingResumed()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-store-").FullName;
        try
        {
            var store = new SessionStore(dir);
            var state = new DraftSessionState { SessionId = "s1", Committed = [1, 2, 3], PromptLength = 1, Round = 2, Epoch = 1 };
            store.Save(state, "fp-a");
            Assert.Equal(state.Committed, store.Load("s1", "fp-a")!.Committed);
            Assert.Contains("different settings", Assert.Throws<InvalidDataException>(() => store.Load("s1", "fp-b")).Message, StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(dir, "s1" + SessionStore.JournalSuffix), "{not a journal");
            Assert.Contains("not a session journal", Assert.Throws<InvalidDataException>(() => store.Load("s1", "fp-a")).Message, StringComparison.Ordinal);
            Assert.Null(store.Load("other", "fp-a"));
            Assert.Throws<ArgumentException>(() => store.Load("../escape", "fp-a"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DraftSession_SnapshotRestored_ContinuesWithSameRounds()
    {
        var settings = new SessionSettings { SessionId = "snap", Mode = DecodingMode.Rsr, Sampling = new SamplingParams(0.8f, 0, 1f), Seed = 3, MaxTokens = 50 };
        var prompt = TestEnvironment.Tokenizer.Encode("Never");
        using var a = new DraftSession(TestEnvironment.Draft, settings, prompt);
        var firstRound = a.PrepareRound(4, 4);
        using var b = new DraftSession(TestEnvironment.Draft, settings, a.Snapshot());
        var again = b.PrepareRound(4, 4);
        Assert.Equal(firstRound.Draft, again.Draft);
        Assert.Equal(firstRound.Round, again.Round);
        Assert.Equal(a.Epoch + 1, b.Epoch); // the restarted device reopens under a new epoch
        Assert.Equal(prompt, again.Pending); // and resends the whole prefix
        var bad = a.Snapshot() with { Committed = [1_000_000], PromptLength = 1 };
        Assert.Throws<ArgumentException>(() => new DraftSession(TestEnvironment.Draft, settings, bad));
    }

    [Fact]
    public async Task HalfOpenLink_DeviceDeclaresItDeadAndReconnects_SameText()
    {
        const string prompt = "A computer";
        const int tokens = 500;
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "hv", log);
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        var slow = new LinkProfile { Delay = TimeSpan.FromMilliseconds(5) };
        link.Configure(slow, slow);
        await link.StartAsync();
        await using var worker = await FaultRig.StartDeviceAsync(link.Port, "half-open-device", "hv", log, TimeSpan.FromSeconds(1));
        var committed = 0;
        var unverified = new List<int>();
        var settings = new SessionSettings { SessionId = "ho", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens };
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), (t, end) =>
        {
            lock (unverified)
            {
                unverified.Add(t);
            }
        }, CancellationToken.None);
        while (Volatile.Read(ref committed) < 100)
        {
            await Task.Delay(5);
        }

        link.HalfOpen();
        await Task.Delay(TimeSpan.FromSeconds(6));
        var levelWhileDown = worker.Level;
        link.Restore();
        var report = await run.WaitAsync(TimeSpan.FromMinutes(3));
        foreach (var entry in log.Entries)
        {
            output.WriteLine(entry);
        }

        Assert.Equal(reference, report.Tokens);
        Assert.True(report.Faults.DeadLinks >= 1, "the half-open link was never declared dead");
        Assert.Equal(DegradationLevel.Offline, levelWhileDown);
        Assert.True(report.Faults.UnverifiedTokensShown > 0 && unverified.Contains(-1), "nothing was shown, flagged, while the link was down");
        output.WriteLine($"dead links {report.Faults.DeadLinks}, link drops {report.Faults.LinkDrops}, retries {report.Retries}, recovery ms {string.Join(", ", report.Faults.RecoveryMillis.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
        await verifier.StopAsync(CancellationToken.None);
    }
    [Fact]
    public async Task BrokerLostEverySession_DeviceAndVerifierResubscribe_SameText()
    {
        const string prompt = "Q:\tWhy";
        const int tokens = 400;
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        var port = EmbeddedBroker.FreePort();
        var broker = await EmbeddedBroker.StartAsync(port);
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(port, "lv", log);
        await using var link = new LinkEmulator(0, "127.0.0.1", port);
        var slow = new LinkProfile { Delay = TimeSpan.FromMilliseconds(5) };
        link.Configure(slow, slow);
        await link.StartAsync();
        await using var worker = await FaultRig.StartDeviceAsync(link.Port, "lost-session-device", null, log, TimeSpan.FromSeconds(1));
        var committed = 0;
        var settings = new SessionSettings { SessionId = "ls", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens };
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        while (Volatile.Read(ref committed) < 100)
        {
            await Task.Delay(5);
        }

        // An in-memory broker restarted: sessions, subscriptions and retained presence are all gone.
        await broker.DisposeAsync();
        await Task.Delay(300);
        broker = await EmbeddedBroker.StartAsync(port);
        try
        {
            var report = await run.WaitAsync(TimeSpan.FromMinutes(3));
            Assert.Equal(reference, report.Tokens);
            Assert.True(report.Faults.LinkDrops >= 1);
            Assert.True(worker.Connection!.Connections >= 2, "the device never reconnected");
            output.WriteLine($"link drops {report.Faults.LinkDrops}, reopens {report.Reopens}, retries {report.Retries}");
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
            await broker.DisposeAsync();
        }
    }
}

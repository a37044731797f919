using System.Buffers.Binary;
using System.Text.Json;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The device's session journal: cut at every byte or corrupted anywhere it resumes from an older committed prefix
/// and the generation ends with the same text; it stays bounded under a long generation; older JSON files are
/// migrated; fsyncs follow the policy; and what it writes per round is measured against the whole-file rewrite.
/// </summary>
public sealed class SessionJournalTests(ITestOutputHelper output)
{
    private const string Prompt = "The meaning of life is";
    private const int HeaderBytes = 8;

    private sealed class ManualClock : TimeProvider
    {
        public long Now { get; set; }

        public override long GetTimestamp() => Now;

        public override long TimestampFrequency => 1000;
    }

    private static SessionSettings Settings(string session, int maxTokens) => Pipeline.Settings(session, DecodingMode.Rsr, 0.8f, maxTokens, seed: 11);

    private static string TempDir() => Directory.CreateTempSubdirectory("iotdsd-journal-").FullName;

    private static int _runs;

    /// <summary>
    /// Runs <paramref name="settings"/> on a fresh worker journaling into <paramref name="stateDir"/>; stops it (as a
    /// crash would) once <paramref name="stopAfter"/> tokens are committed, if given. Each run is its own device (the
    /// text depends on the session id and settings, not on the device), so what is tested here is the journal alone,
    /// not a broker session carried over under one device id.
    /// </summary>
    private static async Task<GenerationReport?> RunAsync(int port, string deviceId, SessionSettings settings, string? stateDir, int? stopAfter = null, JournalPolicy? policy = null, Action? onToken = null)
    {
        var log = new ErrorLog();
        var options = new EdgeOptions { Broker = new Messaging.Connections.BrokerAddress("127.0.0.1", port), DeviceId = $"{deviceId}-{Interlocked.Increment(ref _runs)}", StateDirectory = stateDir, StateJournal = policy ?? new JournalPolicy() };
        await using var worker = new DraftWorker(options, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var committed = 0;
        try
        {
            return await worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(Prompt), settings, _ =>
            {
                onToken?.Invoke();
                if (++committed == stopAfter)
                {
                    stop.Cancel();
                }
            }, stop.Token);
        }
        catch (OperationCanceledException) when (stopAfter is not null && committed >= stopAfter)
        {
            return null;
        }
    }

    /// <summary>Where each record of a whole journal ends, walked from its length prefixes.</summary>
    private static List<int> RecordEnds(byte[] journal)
    {
        var ends = new List<int> { HeaderBytes };
        while (ends[^1] + 8 <= journal.Length)
        {
            var next = ends[^1] + 8 + (int)BinaryPrimitives.ReadUInt32LittleEndian(journal.AsSpan(ends[^1]));
            if (next > journal.Length)
            {
                break;
            }

            ends.Add(next);
        }

        return ends;
    }

    private static JournalContents ReadBytes(byte[] bytes)
    {
        var path = Path.Combine(TempDir(), "x" + SessionStore.JournalSuffix);
        try
        {
            File.WriteAllBytes(path, bytes);
            return SessionStore.Read(path);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public async Task Journal_CutAtEveryByteAndEveryByteFlipped_ResumesFromAnOlderPrefixWithTheSameText()
    {
        var settings = Settings("cut", 160);
        await using var broker = await EmbeddedBroker.StartAsync();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "jv", new ErrorLog());
        var reference = (await RunAsync(broker.Port, "ref-device", settings, null))!.Tokens;
        Assert.Equal(160, reference.Count);

        // A generation stopped dead after 70 tokens leaves its journal behind: a snapshot, then one record per round.
        var crashed = TempDir();
        Assert.Null(await RunAsync(broker.Port, "cut-device", settings, crashed, stopAfter: 70));
        var journal = File.ReadAllBytes(Path.Combine(crashed, "cut" + SessionStore.JournalSuffix));
        var whole = SessionStore.Read(Path.Combine(crashed, "cut" + SessionStore.JournalSuffix));
        var ends = RecordEnds(journal);
        Assert.Equal(journal.Length, ends[^1]);
        Assert.Equal(ends.Count - 1, whole.Records);
        Assert.True(whole.Records >= 10, $"only {whole.Records} records");
        Assert.Equal(0, whole.IgnoredBytes);

        // The state after each whole record: every cut and every flip must land on one of these.
        var states = ends.Select(end => ReadBytes(journal[..end]).State).ToArray();
        Assert.Null(states[0]);
        for (var r = 2; r < states.Length; r++)
        {
            Assert.True(states[r]!.Committed.Length >= states[r - 1]!.Committed.Length && states[r]!.Round > states[r - 1]!.Round);
            Assert.Equal(states[r - 1]!.Committed, states[r]!.Committed[..states[r - 1]!.Committed.Length]);
        }

        for (var cut = 0; cut <= journal.Length; cut++)
        {
            var contents = ReadBytes(journal[..cut]);
            var records = ends.Count(e => e <= cut) - 1; // whole records before the cut
            if (cut < HeaderBytes)
            {
                Assert.Null(contents.State);
                continue;
            }

            Assert.Equal(Math.Max(0, records), contents.Records);
            Assert.Equal(ends[Math.Max(0, records)], contents.GoodBytes);
            Assert.Equal(states[Math.Max(0, records)]?.Committed, contents.State?.Committed);
            Assert.Equal(states[Math.Max(0, records)]?.Round, contents.State?.Round);
        }

        for (var at = 0; at < journal.Length; at++)
        {
            var flipped = (byte[])journal.Clone();
            flipped[at] ^= 0xFF;
            if (at < HeaderBytes)
            {
                // The magic or the format version: not a journal this build can read, refused with a clear message.
                var refused = Assert.Throws<InvalidDataException>(() => ReadBytes(flipped));
                Assert.Contains("delete it to start over", refused.Message, StringComparison.Ordinal);
                continue;
            }

            var damaged = ends.FindIndex(e => e > at) - 1; // the record holding the flipped byte
            var contents = ReadBytes(flipped);
            Assert.Equal(damaged, contents.Records);
            Assert.Equal(states[damaged]?.Committed, contents.State?.Committed);
        }

        // Resume for real from every distinct state a cut can leave (whole records, and torn in the next one).
        var resumedFrom = new List<int>();
        for (var r = 0; r < ends.Count; r++)
        {
            foreach (var cut in new[] { ends[r], Math.Min(journal.Length, ends[r] + 5) }.Distinct())
            {
                var dir = TempDir();
                File.WriteAllBytes(Path.Combine(dir, "cut" + SessionStore.JournalSuffix), journal[..cut]);
                var report = (await RunAsync(broker.Port, "cut-device", settings, dir))!;
                Assert.Equal(reference, report.Tokens);
                Assert.Equal(states[r] is { } s ? s.Committed.Length - s.PromptLength : 0, report.Faults.ResumedTokens);
                Assert.Empty(Directory.GetFiles(dir, "*.session.*")); // finished: forgotten
                resumedFrom.Add(report.Faults.ResumedTokens);
                Directory.Delete(dir, recursive: true);
            }
        }

        // And from a journal corrupted in the middle: the prefix before the damage.
        var middle = (byte[])journal.Clone();
        middle[(ends[ends.Count / 2] + ends[(ends.Count / 2) + 1]) / 2] ^= 0x5A;
        var middleDir = TempDir();
        File.WriteAllBytes(Path.Combine(middleDir, "cut" + SessionStore.JournalSuffix), middle);
        var fromMiddle = (await RunAsync(broker.Port, "cut-device", settings, middleDir))!;
        Assert.Equal(reference, fromMiddle.Tokens);
        Assert.Equal(states[ends.Count / 2]!.Committed.Length - states[ends.Count / 2]!.PromptLength, fromMiddle.Faults.ResumedTokens);
        output.WriteLine($"journal of {journal.Length} bytes, {whole.Records} records; {journal.Length + 1} cuts and {journal.Length} flips read; " +
            $"{resumedFrom.Count + 1} real resumes (from {string.Join(",", resumedFrom.Distinct())} tokens) all ended with the reference text");
        Directory.Delete(crashed, recursive: true);
        Directory.Delete(middleDir, recursive: true);
    }

    [Fact]
    public async Task Journal_LongGenerationWithSmallBound_CompactsStaysBoundedAndResumesAfterCompaction()
    {
        const int tokens = 600;
        var policy = new JournalPolicy { CompactAfterBytes = 512 };
        var settings = Settings("long", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "lv", new ErrorLog());
        var reference = (await RunAsync(broker.Port, "ref-device", settings, null))!.Tokens;

        var dir = TempDir();
        var path = Path.Combine(dir, "long" + SessionStore.JournalSuffix);
        var sizes = new List<(long Bytes, int Committed)>();
        void Observe()
        {
            if (File.Exists(path) && SessionStore.Read(path) is { State: { } s } contents)
            {
                sizes.Add((contents.GoodBytes + contents.IgnoredBytes, s.Committed.Length));
            }
        }

        Assert.Null(await RunAsync(broker.Port, "long-device", settings, dir, stopAfter: 450, policy: policy, onToken: Observe));
        // The snapshot of n tokens is at most ~3 bytes a token plus ~90 of header and counters: the file never grows past
        // twice that plus the bound plus one record.
        Assert.All(sizes, x => Assert.True(x.Bytes <= (2 * (96 + (3L * x.Committed))) + policy.CompactAfterBytes + 128, $"{x.Bytes} bytes for {x.Committed} tokens"));
        Assert.Contains(sizes.Zip(sizes.Skip(1)), p => p.Second.Bytes < p.First.Bytes); // it was compacted, more than once
        Assert.True(sizes.Zip(sizes.Skip(1)).Count(p => p.Second.Bytes < p.First.Bytes) >= 2);

        var resumed = (await RunAsync(broker.Port, "long-device", settings, dir, policy: policy))!;
        Assert.Equal(reference, resumed.Tokens);
        Assert.True(resumed.Faults.ResumedTokens >= 440, $"resumed {resumed.Faults.ResumedTokens}");
        output.WriteLine($"largest journal {sizes.Max(x => x.Bytes)} bytes over {sizes.Count} observations; resumed {resumed.Faults.ResumedTokens} tokens after compactions");
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void Store_ManyRounds_BoundedAmortisedWritesAndExactState()
    {
        var dir = TempDir();
        try
        {
            var policy = new JournalPolicy { CompactAfterBytes = 4096, SyncEveryRounds = 16, SyncInterval = TimeSpan.FromHours(1) };
            using var store = new SessionStore(dir, policy, new ManualClock());
            var path = Path.Combine(dir, "s" + SessionStore.JournalSuffix);
            var committed = new List<int> { 1, 2, 3 };
            DraftSessionState state = new() { SessionId = "s", Committed = [.. committed], PromptLength = 3, Round = 1, Epoch = 1 };
            long largest = 0;
            const int rounds = 20_000;
            for (var round = 1; round <= rounds; round++)
            {
                committed.AddRange([round % 50_000, (round * 7) % 50_000, 255]);
                state = state with { Committed = [.. committed], Round = round + 1, Rounds = round, Drafted = 4L * round, Accepted = 2L * round, ProposalsExamined = round, ProposalsAccepted = round / 2, FollowUps = round / 3 };
                store.Save(state, "fp");
                var size = new FileInfo(path).Length;
                largest = Math.Max(largest, size);
                Assert.True(size <= (2 * (96 + (3L * committed.Count))) + policy.CompactAfterBytes + 64, $"round {round}: {size} bytes for {committed.Count} tokens");
            }

            using var reader = new SessionStore(dir);
            var loaded = reader.Load("s", "fp")!;
            Assert.Equal(state.Committed, loaded.Committed);
            Assert.Equal(state with { Committed = loaded.Committed }, loaded);
            // A round record here is about 40 bytes; compaction rewrites the state once the rounds after it outweigh it,
            // so it at most doubles that on average, however long the generation: bytes per round stay flat.
            var perRound = (double)store.BytesWritten / rounds;
            Assert.True(perRound < 100, $"{perRound:0.0} bytes per round");
            Assert.InRange(store.Snapshots, 2, 200);
            output.WriteLine($"{rounds} rounds, {committed.Count} tokens: {store.BytesWritten} bytes written ({perRound:0.0}/round), {store.Snapshots} snapshots, {store.Syncs} fsyncs, largest file {largest} bytes");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Store_FsyncPolicy_OnOpenEveryNRoundsAndAfterTheInterval()
    {
        var dir = TempDir();
        try
        {
            var clock = new ManualClock();
            using var store = new SessionStore(dir, new JournalPolicy { SyncEveryRounds = 4, SyncInterval = TimeSpan.FromSeconds(2) }, clock);
            var state = new DraftSessionState { SessionId = "f", Committed = [7, 8], PromptLength = 1, Round = 1, Epoch = 1 };
            store.Save(state, "fp");
            var afterOpen = store.Syncs;
            Assert.InRange(afterOpen, 1, 2); // the snapshot file, and its directory where the platform allows
            for (var i = 1; i <= 8; i++)
            {
                state = state with { Committed = [.. state.Committed, i], Round = state.Round + 1 };
                store.Save(state, "fp");
            }

            Assert.Equal(afterOpen + 2, store.Syncs); // rounds 4 and 8
            state = state with { Committed = [.. state.Committed, 9], Round = state.Round + 1 };
            store.Save(state, "fp");
            Assert.Equal(afterOpen + 2, store.Syncs);
            clock.Now += 2000; // the interval passed: the next append fsyncs however few rounds it follows
            state = state with { Committed = [.. state.Committed, 10], Round = state.Round + 1 };
            store.Save(state, "fp");
            Assert.Equal(afterOpen + 3, store.Syncs);
            Assert.Equal(10, store.Appends); // ten appended rounds after the snapshot
            Assert.Equal(1, store.Snapshots);

            // Something that does not extend the last state (another prefix) is written as a fresh snapshot.
            store.Save(state with { Committed = [7, 9], Round = state.Round + 1 }, "fp");
            Assert.Equal(2, store.Snapshots);
            Assert.Equal([7, 9], SessionStore.Read(Path.Combine(dir, "f" + SessionStore.JournalSuffix)).State!.Committed);
            Assert.Contains("at least 1", new JournalPolicy { SyncEveryRounds = 0 }.Validate(), StringComparison.Ordinal);
            Assert.Throws<ArgumentException>(() => new SessionStore(dir, new JournalPolicy { CompactAfterBytes = 0 }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Store_OlderJsonFile_MigratedOnTheNextSaveOrRefusedWhenCorrupt()
    {
        var dir = TempDir();
        try
        {
            var old = new DraftSessionState { SessionId = "m", Committed = [5, 6, 7, 8], PromptLength = 2, Round = 3, Epoch = 2, Rounds = 2, Drafted = 8, Accepted = 5 };
            var legacy = Path.Combine(dir, "m.session.json");
            File.WriteAllBytes(legacy, JsonSerializer.SerializeToUtf8Bytes(new { Fingerprint = "fp", State = old }));
            using var store = new SessionStore(dir);
            var loaded = store.Load("m", "fp")!;
            Assert.Equal(old.Committed, loaded.Committed);
            Assert.Equal(old with { Committed = loaded.Committed }, loaded);
            Assert.Contains("different settings", Assert.Throws<InvalidDataException>(() => store.Load("m", "other")).Message, StringComparison.Ordinal);

            store.Save(loaded with { Committed = [.. loaded.Committed, 9], Round = 4, Epoch = 3 }, "fp");
            Assert.False(File.Exists(legacy)); // replaced by the journal
            Assert.Equal([5, 6, 7, 8, 9], store.Load("m", "fp")!.Committed);

            File.WriteAllText(Path.Combine(dir, "n.session.json"), "{not json");
            var corrupt = Assert.Throws<InvalidDataException>(() => store.Load("n", "fp"));
            Assert.Contains("older format", corrupt.Message, StringComparison.Ordinal);
            Assert.Contains("delete it to start over", corrupt.Message, StringComparison.Ordinal);

            var newer = Path.Combine(dir, "v" + SessionStore.JournalSuffix);
            File.WriteAllBytes(newer, [.. "IOTDSDJ"u8, 2, 0, 0, 0, 0]);
            Assert.Contains("format version 2", Assert.Throws<InvalidDataException>(() => store.Load("v", "fp")).Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// What the journal writes per round against what the whole-file JSON rewrite wrote (the same states, serialized
    /// as the older store did), for one real generation with the default policy.
    /// </summary>
    [Fact]
    public async Task Journal_RealGeneration_BytesAndFsyncsPerRoundAgainstTheWholeFileRewrite()
    {
        const int tokens = 400;
        var settings = Settings("measure", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "mv", new ErrorLog());
        var dir = TempDir();
        var path = Path.Combine(dir, "measure" + SessionStore.JournalSuffix);
        var states = new Dictionary<long, DraftSessionState>();
        var fingerprint = "";
        void Observe()
        {
            if (File.Exists(path) && SessionStore.Read(path) is { State: { } s } contents)
            {
                states[s.Round] = s;
                fingerprint = contents.Fingerprint!;
            }
        }

        var report = (await RunAsync(broker.Port, "measure-device", settings, dir, onToken: Observe))!;
        Assert.Equal(tokens, report.Tokens.Count);
        var rounds = report.Rounds;
        // The older store wrote {Fingerprint, State} as JSON after every round (temp file + rename, no fsync).
        var legacyBytes = states.Values.Sum(s => (long)JsonSerializer.SerializeToUtf8Bytes(new { Fingerprint = fingerprint, State = s }).Length);
        var legacyPerRound = (double)legacyBytes / states.Count;
        var journalPerRound = (double)report.StateBytesWritten / rounds;
        output.WriteLine($"{tokens} tokens, {rounds} rounds: journal {report.StateBytesWritten} B ({journalPerRound:0.0} B/round), {report.StateSyncs} fsyncs ({(double)report.StateSyncs / rounds:0.000}/round); " +
            $"whole-file JSON {legacyPerRound:0} B/round over the {states.Count} rounds observed (≈{legacyPerRound * rounds:0} B a generation), 0 fsyncs");
        Assert.True(journalPerRound * 10 < legacyPerRound, $"journal {journalPerRound:0.0} B/round against {legacyPerRound:0.0}");
        Assert.True(report.StateSyncs <= 3 + (rounds / 16) + 1, $"{report.StateSyncs} fsyncs in {rounds} rounds");
        Assert.True(states.Count >= rounds / 2, $"observed {states.Count} of {rounds} rounds");
        Directory.Delete(dir, recursive: true);
    }
}

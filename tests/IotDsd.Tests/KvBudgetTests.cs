using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using IotDsd.Verifier.Sessions;

namespace IotDsd.Tests;

/// <summary>The verifier's global KV budget on real sessions of the test pair: admission, LRU eviction of idle sessions, refusal.</summary>
public sealed class KvBudgetTests
{
    private const long BytesPerToken = 1024;

    /// <summary>A session of <paramref name="id"/> after one verified round (its prompt and a round's commit cached).</summary>
    private static VerifierSession Verified(string id, long lastUsed)
    {
        var settings = Pipeline.Settings(id, DecodingMode.Greedy, 0f, 40, seed: 3);
        using var draft = new DraftSession(TestEnvironment.Draft, settings, TestEnvironment.Tokenizer.Encode("The budget holds what the sessions cache."));
        var verifier = new VerifierSession(TestEnvironment.Target, draft.OpenRequest("dev"), "dev");
        var round = draft.PrepareRound(4, 8);
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
        var request = verifier.BeginFeed(round);
        TestEnvironment.Target.FeedBatch([request]);
        verifier.Complete(round, request.Logits.Span, 1, 0, 0);
        Assert.True(verifier.Known > 0);
        verifier.LastUsedTicks = lastUsed;
        return verifier;
    }

    [Fact]
    public void Open_PastTheBudget_EvictsIdleSessionsOldestFirst_ThenRefusesAndCounts()
    {
        long now = Stopwatch.GetTimestamp(), minute = 60 * Stopwatch.Frequency;
        using var table = new SessionTable();
        var oldest = Verified("oldest", now - (3 * minute));
        var older = Verified("older", now - (2 * minute));
        var busy = Verified("busy", now);
        table.Put("dev", oldest);
        table.Put("dev", older);
        table.Put("dev", busy);
        long held = KvBudget.Held(table, BytesPerToken);
        Assert.Equal((long)(oldest.Known + older.Known + busy.Known) * BytesPerToken, held);

        // Room for the three and a 64-token reservation, but a 200-token generation (205 with γ + 1) needs the oldest
        // idle session's room too: it goes, the next oldest stays.
        Assert.InRange(oldest.Known, 1, 141);
        var budget = new KvBudget(held + ((205 - oldest.Known) * BytesPerToken), BytesPerToken, TimeSpan.FromSeconds(30));
        Assert.Null(budget.AdmitOpen(table, 10, 4, now));
        Assert.Equal(0, budget.Evictions);
        Assert.Null(budget.AdmitOpen(table, 200, 4, now));
        Assert.Equal(1, budget.Evictions);
        Assert.Null(table.Find("dev", "oldest"));
        Assert.True(table.WasExpired("dev", "oldest"));
        Assert.NotNull(table.Find("dev", "older"));

        // A generation larger than everything: the other idle session goes too, and it is still refused, and counted.
        var reason = budget.AdmitOpen(table, 100_000, 4, now);
        Assert.NotNull(reason);
        Assert.Contains("KV budget is full", reason, StringComparison.Ordinal);
        Assert.Equal(1, budget.Refusals);
        Assert.Equal(2, budget.Evictions);
        Assert.Null(table.Find("dev", "older"));
        Assert.NotNull(table.Find("dev", "busy")); // a session in use is never evicted
    }

    [Fact]
    public void Round_GrowingPastTheBudget_RefusedWhenNothingIsIdle()
    {
        long now = Stopwatch.GetTimestamp();
        using var table = new SessionTable();
        var a = Verified("a", now);
        var b = Verified("b", now);
        table.Put("dev", a);
        table.Put("dev", b);
        var budget = new KvBudget(KvBudget.Held(table, BytesPerToken) + (10 * BytesPerToken), BytesPerToken, TimeSpan.FromSeconds(30));
        Assert.Null(budget.AdmitRound(table, a, a.Known + 10, now));
        Assert.NotNull(budget.AdmitRound(table, a, a.Known + 11, now));
        Assert.Equal(1, budget.Refusals);
        Assert.Equal(0, budget.Evictions);
    }

    [Fact]
    public void PoolTarget_CountsSlotsTimesTheLongest_RefusesWhatTokensAloneWouldAdmit()
    {
        // A real slot-signature target: its pool makes every slot as long as the longest session, slots 1, 2, 4, 8, …
        var dir = Path.Combine(Path.GetTempPath(), $"iotdsd-kvpool-{Guid.NewGuid():N}");
        try
        {
            IotDsd.Inference.Transformer.TransformerModelBuilder.Build("tiny", "target", 3, dir, IotDsd.Inference.Ngram.DefaultModels.Corpus.Span, "fortunes-en");
            using var pool = (IotDsd.Inference.Transformer.TransformerModel)IotDsd.Inference.Models.ModelDirectory.Load(dir);
            long bpt = pool.CacheBytesPerToken; // 4,096 B a position
            long now = Stopwatch.GetTimestamp();
            using var table = new SessionTable();
            var a = Verified("a", now);
            var b = Verified("b", now);
            var c = Verified("c", now);
            table.Put("dev", a);
            table.Put("dev", b);
            table.Put("dev", c);
            Assert.All(new[] { a, b, c }, s => Assert.InRange(s.Known, 1, 50));

            // Three sessions of under 64 tokens: 4 slots × 64 positions, far more than their tokens.
            var budget = new KvBudget(4 * 64 * bpt, bpt, TimeSpan.FromSeconds(30), pool);
            Assert.True(budget.CountsPool);
            Assert.Equal(4 * 64 * bpt, budget.HeldBytes(table));
            long tokens = a.Known + b.Known + c.Known;
            Assert.True(tokens * bpt < budget.HeldBytes(table), $"{tokens} tokens against 256 positions");
            budget.BeginPass(table);

            // A round within 64 positions fits; one to 100 tokens would make every slot 128 long: refused, though the
            // tokens alone (under 250 in all) would fit.
            Assert.Null(budget.AdmitRound(table, a, 60, now));
            var longer = budget.AdmitRound(table, a, 100, now);
            Assert.NotNull(longer);
            Assert.Contains("would make the KV pool 2 MiB", longer, StringComparison.Ordinal);
            Assert.Contains("KV budget is full", longer, StringComparison.Ordinal);
            Assert.Null(new KvBudget(4 * 64 * bpt, bpt, TimeSpan.FromSeconds(30)).AdmitRound(table, a, 100, now)); // tokens alone

            // A fourth session fits the four slots; a fifth would double them.
            Assert.Null(budget.AdmitOpen(table, 40, 4, now));
            table.Put("dev", Verified("d", now));
            Assert.NotNull(budget.AdmitOpen(table, 40, 4, now));
            Assert.Equal(2, budget.Refusals);

            // The rule is the pool's own: what it predicts for 6 sessions, the longest 300 tokens, is what it allocates.
            var sequences = Enumerable.Range(0, 6).Select(_ => pool.CreateSequence()).ToList();
            long predicted = pool.KvPoolPositions(6, 300)!.Value;
            for (int i = 0; i < sequences.Count; i++)
            {
                sequences[i].Feed(Enumerable.Range(0, i == 0 ? 300 : 10 + i).Select(t => t % 200).ToArray(), new float[pool.VocabSize]);
            }

            Assert.Equal(predicted * bpt, pool.KvPoolState.Bytes);
            Assert.Equal((8, 320), (pool.KvPoolState.Slots, pool.KvPoolState.Capacity));
            foreach (var s in sequences) s.Dispose();
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task Verifier_OpenPastItsKvBudget_RefusedOverloadedAndCounted_SmallerOneOpens()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        const string verifierId = "kv-verifier", device = "kv-device";
        var limits = new IotDsd.Verifier.Limits.VerifierLimits { BytesPerCachedToken = 1024, KvBudgetBytes = 100 << 10 }; // 100 tokens
        using var verifier = new VerifierService(
            new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = verifierId, Limits = limits },
            TestEnvironment.Target, new ErrorLog().CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        await using var client = await RawClient.ConnectAsync(broker.Port, "kv-client", TopicScheme.DeviceReplies(device));
        var rounds = TopicScheme.VerifierRounds(verifierId, device);
        OpenSession Open(string id, int maxTokens) =>
            new() { SessionId = id, DeviceId = device, Epoch = 1, Mode = DecodingMode.Greedy, VocabSize = 256, MaxGamma = 4, MaxTokens = maxTokens };

        await client.PublishAsync(rounds, WireCodec.Encode(Open("big", 200)), TopicScheme.DeviceReplies(device));
        var refused = await client.WaitForAsync(m => WireCodec.Decode(m.Payload).Message is ErrorReply);
        var error = (ErrorReply)WireCodec.Decode(refused.Payload).Message!;
        Assert.Equal(ErrorCode.Overloaded, error.Code);
        Assert.Contains("KV budget", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, verifier.KvBudget.Refusals);
        Assert.Equal(100 << 10, verifier.KvBudget.BudgetBytes);

        await client.PublishAsync(rounds, WireCodec.Encode(Open("small", 40)), TopicScheme.DeviceReplies(device));
        var opened = await client.WaitForAsync(m => WireCodec.Decode(m.Payload).Message is SessionOpened);
        Assert.Equal("small", ((SessionOpened)WireCodec.Decode(opened.Payload).Message!).SessionId);
        Assert.Equal(1, verifier.SessionCount);
        await verifier.StopAsync(CancellationToken.None);
    }
}

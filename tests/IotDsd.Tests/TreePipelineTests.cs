using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Inference.Models;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Hosting;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>Token-tree rounds through the broker, the real verifier service and the shipped ONNX models.</summary>
public sealed class TreePipelineTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(3, 2, 6)]
    [InlineData(4, 3, 12)]
    [InlineData(6, 4, 24)]
    public async Task GreedyTrees_ThroughTheVerifier_GiveTheTargetOnlyText(int depth, int width, int nodes)
    {
        const int tokens = 160;
        const string prompt = "Once upon a time";
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var shape = new RoundShape(depth, width, nodes, 0);
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => o with { Shape = shape });
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var settings = Pipeline.Settings("tree", DecodingMode.Greedy, 0f, tokens, seed: 1, gamma: depth) with { MaxTreeNodes = nodes };
        var tree = await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, cts.Token);
        var chain = await pipeline.GenerateAsync(prompt, DecodingMode.Greedy, 0f, tokens, gamma: depth, session: "chain");
        Assert.Equal(reference, tree.Tokens);
        Assert.Equal(reference, chain.Tokens);
        output.WriteLine($"{shape}: {tree.Rounds} rounds, acceptance {tree.AcceptanceRate:P1}; chain {depth}: {chain.Rounds} rounds, acceptance {chain.AcceptanceRate:P1}");
        Assert.True(tree.Rounds <= chain.Rounds, $"a tree holds the chain of its depth and should take no more rounds: {tree.Rounds} vs {chain.Rounds}");
        Assert.Empty(pipeline.Log.Errors);
    }

    [Fact]
    public async Task Open_TreeBudgetAboveTheVerifierLimit_GrantedTheLimitTreesWithinItTextExact()
    {
        // A device asking for 16-node trees on a verifier that allows 8: the open is granted 8 (SessionOpened[4]) and
        // every tree round carries at most 8 nodes, where the verifier once refused the open.
        const int tokens = 80;
        const string prompt = "Once upon a time";
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var watch = await WireWatch.StartAsync(broker.Port, "grant-device");
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        var limits = new IotDsd.Verifier.Limits.VerifierLimits { MaxTreeNodes = 8 };
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "grant-verifier", Limits = limits }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        try
        {
            await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = "grant-device", VerifierId = "grant-verifier", Shape = new RoundShape(4, 3, 16, 0) }, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
            await worker.StartAsync(CancellationToken.None);
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var settings = Pipeline.Settings("grant", DecodingMode.Greedy, 0f, tokens, seed: 1, gamma: 4) with { MaxTreeNodes = 16 };
            var report = await worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, cts.Token);
            Assert.Equal(reference, report.Tokens);
            var seen = watch.Seen.Select(m => m.Message).ToList();
            Assert.Equal(16, seen.OfType<OpenSession>().First().MaxTreeNodes);
            Assert.Equal(8, seen.OfType<SessionOpened>().First().MaxTreeNodes);
            var trees = seen.OfType<DraftRound>().Where(r => r.TreeParents is not null).ToList();
            Assert.NotEmpty(trees);
            Assert.All(trees, r => Assert.InRange(r.Draft.Length, 5, 8));
            Assert.Empty(log.Errors);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task GreedyTrees_ShippedStoriesPair_GiveTheTargetOnlyText()
    {
        const int tokens = 120;
        using var models = ModelPair.Load(null, null, needDraft: true, pair: ModelPair.StoriesPair);
        var prompt = models.EncodePrompt("Once upon a time, there was a little girl");
        var reference = Autoregressive.Generate(models.Target, prompt, SamplingParams.Greedy, 0, "ref", tokens);
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "stories-verifier" }, models.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        var shape = new RoundShape(4, 3, 12, 0);
        await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = "stories-device", Shape = shape }, models.Draft!, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try
        {
            var settings = Pipeline.Settings("stories-tree", DecodingMode.Greedy, 0f, tokens, seed: 1, gamma: 4) with { MaxTreeNodes = 12 };
            var tree = await worker.GenerateAsync(prompt, settings, null, cts.Token);
            var chain = await worker.GenerateAsync(prompt, settings with { SessionId = "stories-chain", MaxTreeNodes = 0 }, null, cts.Token);
            Assert.Equal(reference, tree.Tokens);
            Assert.Equal(reference, chain.Tokens);
            output.WriteLine($"stories260K, {shape}: {tree.Rounds} rounds, up {tree.UplinkBytesPerToken:0.0} B/token; chain 4: {chain.Rounds} rounds, up {chain.UplinkBytesPerToken:0.0} B/token");
            Assert.True(tree.Rounds <= chain.Rounds, $"a tree holds the chain of its depth and should take no more rounds: {tree.Rounds} vs {chain.Rounds}");
            Assert.Empty(log.Errors);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task DsdTrees_ThroughTheVerifier_SameSeedSameText()
    {
        const string prompt = "Once upon a time";
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => o with { Shape = new RoundShape(4, 3, 10, 0) });
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var settings = Pipeline.Settings("dsd-tree", DecodingMode.Dsd, 0.8f, 120, seed: 5, gamma: 4) with { MaxTreeNodes = 10 };
        var first = await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, cts.Token);
        var second = await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, cts.Token);
        var other = await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings with { Seed = 6 }, null, cts.Token);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.NotEqual(first.Tokens, other.Tokens);
        Assert.Equal(120, first.Tokens.Count);
        Assert.True(first.Rounds < 120, $"{first.Rounds} rounds for 120 tokens means nothing was accepted");
        output.WriteLine($"dsd tree: {first.Rounds} rounds, up {first.UplinkBytesPerToken:0.0} B/token");
        Assert.Empty(pipeline.Log.Errors);
    }

    [Fact]
    public async Task OpenAskingMoreTreeNodesThanTheDefaultLimit_GrantedSixtyFourTextExact()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => o with { Shape = new RoundShape(4, 4, 100, 0) });
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var settings = Pipeline.Settings("too-many", DecodingMode.Greedy, 0f, 40, seed: 1, gamma: 4) with { MaxTreeNodes = 100 };
        var report = await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode("Once"), settings, null, cts.Token);
        Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode("Once"), SamplingParams.Greedy, 0, "ref", 40), report.Tokens);
        Assert.Empty(pipeline.Log.Errors);
    }

    [Fact]
    public async Task BenchTrees_Json_OneObjectPerPoint_AndBadRoundsExit2()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "bench", "trees", "--batches", "1,2", "--rounds", "2", "--json");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2 * 6 * 2, lines.Length); // modes × shapes × batches
        foreach (var line in lines)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            Assert.True(doc.RootElement.GetProperty("verify_ms").GetDouble() > 0);
            Assert.True(doc.RootElement.GetProperty("uplink_bytes_per_round").GetDouble() > 0);
            Assert.True(doc.RootElement.GetProperty("committed_per_round").GetDouble() >= 1);
        }

        var bad = await CliProcess.RunAsync(null, "bench", "trees", "--rounds", "0");
        Assert.Equal(2, bad.Code);
        Assert.Contains("--rounds must be between 1 and 100", bad.Err);
        Assert.Single(bad.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}

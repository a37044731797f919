using System.Text.Json;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Baseline;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Baseline;
using IotDsd.Verifier.Hosting;
using Xunit;

namespace IotDsd.Tests;

/// <summary>The server-only baseline and the load generator, through real brokers.</summary>
public sealed class CapacityTests
{
    private const string Server = "baseline-test";

    private static async Task<(BaselineServer Server, ErrorLog Log)> StartServerAsync(int port, int maxBatch = 32)
    {
        var log = new ErrorLog();
        var server = new BaselineServer(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", port), VerifierId = Server, MaxBatch = maxBatch }, TestEnvironment.Target, log.CreateLogger<BaselineServer>());
        await server.StartAsync(CancellationToken.None);
        await server.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        return (server, log);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.8f)]
    public async Task BaselineServer_ConcurrentStreams_EachEqualsTargetOnlyDecoding(float temperature)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var (server, log) = await StartServerAsync(broker.Port, maxBatch: 3);
        try
        {
            var prompt = TestEnvironment.Tokenizer.Encode("The meaning of life is");
            var sampling = new SamplingParams(temperature, 0, 1f);
            var runs = Enumerable.Range(0, 5).Select(async i =>
            {
                await using var client = new StreamClient(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), DeviceId = $"stream{i}" }, Server, log.CreateLogger<StreamClient>());
                await client.StartAsync(CancellationToken.None);
                var seen = new List<int>();
                var report = await client.GenerateAsync(prompt, sampling, (ulong)(100 + i), $"s{i}", 120, seen.Add, CancellationToken.None);
                var reference = Autoregressive.Generate(TestEnvironment.Target, prompt, sampling, (ulong)(100 + i), $"s{i}", 120);
                Assert.Equal(reference, report.Tokens);
                Assert.Equal(reference, seen);
                Assert.Equal(0, report.Duplicates);
                Assert.Equal(119, report.TokenGapMillis.Count);
                return report.MeanBatch;
            }).ToArray();
            var batches = await Task.WhenAll(runs);
            Assert.True(server.Stats.MaxBatch > 1, "five concurrent streams were never batched");
            Assert.True(server.Stats.MaxBatch <= 3, $"batch {server.Stats.MaxBatch} exceeded the bound of 3");
            Assert.All(batches, b => Assert.InRange(b, 1, 3));
            Assert.Empty(log.Entries);
        }
        finally
        {
            await server.StopAsync(CancellationToken.None);
            server.Dispose();
        }
    }

    [Fact]
    public async Task BaselineServer_BadAndDuplicateRequests_RefusedOrIgnoredAndOthersUnaffected()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var (server, log) = await StartServerAsync(broker.Port);
        try
        {
            await using var raw = await RawClient.ConnectAsync(broker.Port, "raw-mallory", TopicScheme.DeviceReplies("mallory"));
            var topic = TopicScheme.ServerStreams(Server, "mallory");
            var replies = TopicScheme.DeviceReplies("mallory");

            async Task<ErrorReply> RefusedAsync(byte[] payload, byte correlation)
            {
                await raw.PublishAsync(topic, payload, replies, [correlation, 0, 0, 0, 0, 0, 0, 0]);
                var reply = await raw.WaitForAsync(m => m.Correlation is { } c && c[0] == correlation);
                var decoded = WireCodec.Decode(reply.Payload);
                return Assert.IsType<ErrorReply>(decoded.Message);
            }

            Assert.Equal(ErrorCode.Malformed, (await RefusedAsync([0xC1, 0x00], 1)).Code);
            Assert.Equal(ErrorCode.WrongTopic, (await RefusedAsync(WireCodec.Encode(new StreamRequest { SessionId = "x", DeviceId = "alice", Prompt = [65], MaxTokens = 5 }), 2)).Code);
            Assert.Equal(ErrorCode.InvalidRequest, (await RefusedAsync(WireCodec.Encode(new StreamRequest { SessionId = "x", DeviceId = "mallory", Prompt = [999], MaxTokens = 5 }), 3)).Code);
            Assert.Equal(ErrorCode.InvalidRequest, (await RefusedAsync(WireCodec.Encode(new StreamRequest { SessionId = "x", DeviceId = "mallory", Prompt = [], MaxTokens = 5 }), 4)).Code);
            Assert.Equal(ErrorCode.UnexpectedMessage, (await RefusedAsync(WireCodec.Encode(new DraftRound { SessionId = "x" }), 5)).Code);

            // The same request delivered twice streams once: every position arrives exactly once.
            var request = WireCodec.Encode(new StreamRequest { SessionId = "twice", DeviceId = "mallory", Prompt = [84, 104, 101], MaxTokens = 40 });
            await raw.PublishAsync(topic, request, replies, [9, 0, 0, 0, 0, 0, 0, 0]);
            await raw.PublishAsync(topic, request, replies, [9, 0, 0, 0, 0, 0, 0, 0]);
            await raw.WaitForAsync(m => WireCodec.Decode(m.Payload).Message is TokenChunk { Done: true });
            var chunks = raw.Received.Select(m => WireCodec.Decode(m.Payload).Message).OfType<TokenChunk>().ToList();
            Assert.Equal(Enumerable.Range(0, 40), chunks.Select(c => c.Index).Order());

            await using var honest = new StreamClient(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), DeviceId = "honest" }, Server, log.CreateLogger<StreamClient>());
            await honest.StartAsync(CancellationToken.None);
            var report = await honest.GenerateAsync([65, 32], SamplingParams.Greedy, 1, "h", 30, null, CancellationToken.None);
            Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, [65, 32], SamplingParams.Greedy, 1, "h", 30), report.Tokens);
            Assert.Equal(5, server.Errors.Total);
        }
        finally
        {
            await server.StopAsync(CancellationToken.None);
            server.Dispose();
        }
    }

    [Fact]
    public async Task StreamClient_NoServer_FailsClosedWithClearError()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        await using var client = new StreamClient(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), DeviceId = "lonely", RequestTimeout = TimeSpan.FromMilliseconds(300) }, "nobody", log.CreateLogger<StreamClient>());
        await client.StartAsync(CancellationToken.None);
        var ex = await Assert.ThrowsAsync<GenerationException>(() => client.GenerateAsync([65], SamplingParams.Greedy, 1, "x", 5, null, CancellationToken.None));
        Assert.Contains("sent nothing", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--temperature", "0")]
    [InlineData("--baseline", "--temperature", "0.7")]
    [InlineData("--mode", "dssd")]
    public async Task Loadgen_EmbeddedBroker_ReportsZeroLossAndReferenceMatches(params string[] extra)
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["loadgen", "--devices", "4", "--max-tokens", "40", "--prompt", "Once upon a time", "--json", .. extra]);
        Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}");
        using var report = JsonDocument.Parse(stdout);
        var root = report.RootElement;
        Assert.Equal(4, root.GetProperty("completed").GetInt32());
        Assert.Equal(160, root.GetProperty("tokens").GetInt64());
        Assert.Equal(0, root.GetProperty("lost_tokens").GetInt64());
        Assert.Equal(0, root.GetProperty("duplicated_tokens").GetInt64());
        Assert.Equal(0, root.GetProperty("reference_mismatches").GetInt32());
        Assert.True(root.GetProperty("tpot_ms_p99").GetDouble() >= root.GetProperty("tpot_ms_p50").GetDouble());
        Assert.True(root.GetProperty("max_batch").GetInt64() >= 1);
        Assert.Equal(extra.Contains("--baseline") ? "baseline" : "iotdsd", root.GetProperty("system").GetString());
    }

    [Fact]
    public async Task Loadgen_NoPrompt_RunsTheShippedPromptSetOnePerDevice()
    {
        var shipped = File.ReadAllLines(Path.Combine(Security.SecureBroker.RepoRoot, "devices", "prompts.txt")).Where(l => l.Trim().Length > 0).ToArray();
        Assert.Equal(shipped, Testbed.Load.LoadGenerator.DefaultPrompts());
        Assert.True(shipped.Length >= 2);

        var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["loadgen", "--devices", "3", "--max-tokens", "30", "--temperature", "0", "--json"]);
        Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}");
        using var report = JsonDocument.Parse(stdout);
        var root = report.RootElement;
        Assert.Equal(3, root.GetProperty("completed").GetInt32());
        Assert.Equal(90, root.GetProperty("tokens").GetInt64());
        // Each device's greedy text is checked against target-only decoding of its own prompt.
        Assert.Equal(0, root.GetProperty("reference_mismatches").GetInt32());
        Assert.Equal(0, root.GetProperty("lost_tokens").GetInt64());
    }

    [Fact]
    public async Task Loadgen_ExternalVerifier_ReportsTheLargestBatchItsRepliesSaw()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "external", new ErrorLog());
        var (code, stdout, stderr) = await CliProcess.RunAsync(null,
            ["loadgen", "--broker", $"127.0.0.1:{broker.Port}", "--devices", "4", "--max-tokens", "40", "--prompt", "Once upon a time", "--temperature", "0", "--json"]);
        Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}");
        using var report = JsonDocument.Parse(stdout);
        var root = report.RootElement;
        var max = root.GetProperty("max_batch").GetInt64();
        Assert.True(max >= 1, stdout);
        Assert.True(max >= root.GetProperty("mean_batch").GetDouble(), stdout);
        Assert.True(max <= verifier.Stats.MaxBatch, $"loadgen says {max}, the verifier's largest pass was {verifier.Stats.MaxBatch}");
    }

    [Fact]
    public void LoadReport_NoVerifierStats_MaxBatchFromTheSessions()
    {
        IReadOnlyList<double> steps = [1.0];
        var samples = new[] { 3, 7, 5 }.Select(m => new Testbed.Load.SessionSample(10, 10, true, 10, 1, steps, 0, 0, 0, 0, m - 0.5, 0, 0, 4, 3) { MaxBatch = m }).ToList();
        var report = Testbed.Load.LoadReport.From("iotdsd", "greedy", 3, samples, [], 1, maxBatch: 0, meanBatch: null, []);
        Assert.Equal(7, report.MaxBatch);
        Assert.Equal(9, Testbed.Load.LoadReport.From("iotdsd", "greedy", 3, samples, [], 1, maxBatch: 9, meanBatch: 4, []).MaxBatch);
    }

    [Fact]
    public async Task BenchCapacity_BothSystems_ReportsEachPointAndTheRatio()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null,
            ["bench", "capacity", "--sessions", "1,3", "--max-tokens", "24", "--slo-ms", "100000", "--prompt", "Once upon a time", "--temperature", "0.8", "--json"]);
        Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}");
        using var report = JsonDocument.Parse(stdout);
        var systems = report.RootElement.GetProperty("systems").EnumerateArray().ToArray();
        Assert.Equal(["iotdsd", "baseline"], systems.Select(s => s.GetProperty("system").GetString()));
        foreach (var system in systems)
        {
            // A generous SLO: every point is within it, so the capacity is the largest count tried.
            Assert.Equal(3, system.GetProperty("sessions_within_slo")[0].GetInt32());
            var runs = system.GetProperty("runs").EnumerateArray().ToArray();
            Assert.Equal([1, 3], runs.Select(r => r.GetProperty("devices").GetInt32()));
            Assert.All(runs, r => Assert.Equal(0, r.GetProperty("lost_tokens").GetInt64()));
            Assert.Equal(72, runs[1].GetProperty("tokens").GetInt64());
        }

        Assert.Equal(1.0, report.RootElement.GetProperty("capacity_ratio")[0].GetDouble());
        Assert.Contains("within SLO", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BenchCapacity_TightSlo_StopsClimbingAfterTheBreak()
    {
        // No session can reach a 1 µs TPOT: both systems stop after --past-slo more points, with capacity 0.
        var (code, stdout, stderr) = await CliProcess.RunAsync(null,
            ["bench", "capacity", "--sessions", "1,2,3,4", "--past-slo", "0", "--max-tokens", "8", "--slo-ms", "0.001", "--prompt", "Once", "--json"]);
        Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}");
        using var report = JsonDocument.Parse(stdout);
        foreach (var system in report.RootElement.GetProperty("systems").EnumerateArray())
        {
            Assert.Equal(0, system.GetProperty("sessions_within_slo")[0].GetInt32());
            Assert.Single(system.GetProperty("runs").EnumerateArray());
        }

        Assert.Equal(JsonValueKind.Null, report.RootElement.GetProperty("capacity_ratio")[0].ValueKind);
    }

    [Theory]
    [InlineData("--sessions", "4,2")]
    [InlineData("--sessions", "0")]
    [InlineData("--slo-ms", "0")]
    [InlineData("--slo-ms", "50,x")]
    [InlineData("--batch-wait-ms", "-1")]
    [InlineData("--systems", "other")]
    public async Task BenchCapacity_BadArguments_OneLineErrorAndExit2(params string[] args)
    {
        var (code, _, stderr) = await CliProcess.RunAsync(null, ["bench", "capacity", "--prompt", "x", .. args]);
        Assert.Equal(2, code);
        Assert.StartsWith("iotdsd bench capacity: ", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--devices", "0")]
    [InlineData("--broker", "nonsense")]
    [InlineData("--watch", "broker")]
    public async Task Loadgen_BadArguments_OneLineErrorAndExit2(params string[] args)
    {
        var (code, _, stderr) = await CliProcess.RunAsync(null, ["loadgen", "--prompt", "x", .. args]);
        Assert.Equal(2, code);
        Assert.StartsWith("iotdsd loadgen: ", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f, true)]
    [InlineData(DecodingMode.Rsr, 0.8f, false)]
    public async Task DraftWorker_AdaptiveGamma_GreedyAdaptsExactlySamplingKeepsGamma(DecodingMode mode, float temperature, bool adapts)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "v-adapt" }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        try
        {
            await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = "adaptive", VerifierId = "v-adapt", MaxDepth = 12, MaxTreeNodes = 0, PipelineMinRoundTripMs = 0 }, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
            await worker.StartAsync(CancellationToken.None);
            var prompt = TestEnvironment.Tokenizer.Encode("It was a dark");
            var sampling = new SamplingParams(temperature, 0, 1f);
            var settings = new Core.Sessions.SessionSettings { SessionId = "adapt", Mode = mode, Sampling = sampling, Seed = 3, MaxTokens = 400, Gamma = 12 };
            var report = await worker.GenerateAsync(prompt, settings, null, CancellationToken.None);
            var drafted = report.DraftedPerRound.Take(report.DraftedPerRound.Count - 1).ToArray(); // the last round may be clamped
            Assert.All(drafted, g => Assert.InRange(g, 1, 12));
            if (adapts)
            {
                // At ~0.5 acceptance 12 drafts a round is never goodput-optimal: the controller must move off it.
                Assert.Contains(drafted, g => g < 12);
                Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, prompt, sampling, 3, "adapt", 400), report.Tokens);
            }
            else
            {
                Assert.All(drafted, g => Assert.Equal(12, g));
            }
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Verifiers_OneJoinsMidSession_LiveSessionStaysWhereItsCacheIs()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        // A session the hash gives to the joining verifier once it is live: without stickiness it would move there.
        var session = Enumerable.Range(0, 100).Select(i => $"sticky{i}").First(s => Messaging.Presence.VerifierDirectory.Score("v-late", s) > Messaging.Presence.VerifierDirectory.Score("v-first", s));
        VerifierService Start(string id) => new(new VerifierOptions { Broker = address, VerifierId = id }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
        using var first = Start("v-first");
        await first.StartAsync(CancellationToken.None);
        await first.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        using var late = Start("v-late");
        var joined = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = "sticky-device" }, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
            await worker.StartAsync(CancellationToken.None);
            var prompt = TestEnvironment.Tokenizer.Encode("It was a dark");
            var count = 0;
            var settings = new Core.Sessions.SessionSettings { SessionId = session, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = 300, Gamma = 4 };
            var generation = worker.GenerateAsync(prompt, settings, _ =>
            {
                if (++count == 20)
                {
                    // Pause the generation's own thread until the new verifier is live: every later round sees it.
                    Task.Run(async () =>
                    {
                        await late.StartAsync(CancellationToken.None);
                        await late.Ready.WaitAsync(TimeSpan.FromSeconds(20));
                        joined.TrySetResult();
                    });
                    joined.Task.Wait(TimeSpan.FromSeconds(30));
                }
            }, CancellationToken.None);
            var report = await generation;
            Assert.True(joined.Task.IsCompleted, "the second verifier never came up");
            Assert.Equal("v-first", report.VerifierId);
            Assert.Equal(0, report.Reopens);
            Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, prompt, SamplingParams.Greedy, 1, session, 300), report.Tokens);
            Assert.Equal(0, late.Stats.Rounds);
        }
        finally
        {
            await late.StopAsync(CancellationToken.None);
            await first.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Verifiers_SeveralOnOneBroker_SessionsSpreadAndStayExact()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        var verifiers = new List<VerifierService>();
        try
        {
            foreach (var id in new[] { "v-a", "v-b", "v-c" })
            {
                var v = new VerifierService(new VerifierOptions { Broker = address, VerifierId = id }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
                await v.StartAsync(CancellationToken.None);
                await v.Ready.WaitAsync(TimeSpan.FromSeconds(20));
                verifiers.Add(v);
            }

            var prompt = TestEnvironment.Tokenizer.Encode("It was a dark");
            var reference = Autoregressive.Generate(TestEnvironment.Target, prompt, SamplingParams.Greedy, 1, "ref", 60);
            var used = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i =>
            {
                await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = $"dev{i}" }, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
                await worker.StartAsync(CancellationToken.None);
                var report = await worker.GenerateAsync(prompt, new Core.Sessions.SessionSettings { SessionId = $"sess{i}", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = 60, Gamma = 4 }, null, CancellationToken.None);
                Assert.Equal(reference, report.Tokens);
                return report.VerifierId;
            }));
            Assert.True(used.Distinct().Count() >= 2, $"12 sessions all went to {used[0]}");
            Assert.Empty(log.Entries);
        }
        finally
        {
            foreach (var v in verifiers)
            {
                await v.StopAsync(CancellationToken.None);
                v.Dispose();
            }
        }
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;
using IotDsd.Inference.Transformer;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>A tiny transformer draft/target pair, built in C# into a temp directory once for the class.</summary>
public sealed class TinyTransformerPair : IDisposable
{
    public TinyTransformerPair()
    {
        Root = Path.Combine(Path.GetTempPath(), "iotdsd-tiny-pair-" + Guid.NewGuid().ToString("N"));
        var corpus = Inference.Ngram.DefaultModels.Corpus.Span;
        TransformerModelBuilder.Build("tiny", "draft", 5, Path.Combine(Root, "draft"), corpus, "fortunes-en");
        TransformerModelBuilder.Build("tiny", "target", 5, Path.Combine(Root, "target"), corpus, "fortunes-en");
        Draft = ModelDirectory.Load(Path.Combine(Root, "draft"));
        Target = ModelDirectory.Load(Path.Combine(Root, "target"));
        Tokenizer = TokenizerFactory.ForModelDirectory(Path.Combine(Root, "target"));
    }

    public string Root { get; }
    public ILanguageModel Draft { get; }
    public ILanguageModel Target { get; }
    public ITokenizer Tokenizer { get; }

    public void Dispose()
    {
        Draft.Dispose();
        Target.Dispose();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The whole pipeline (embedded MQTT broker over TCP, verifier, draft worker) with built transformer models.</summary>
public sealed class TransformerPipelineTests(TinyTransformerPair pair, ITestOutputHelper output) : IClassFixture<TinyTransformerPair>
{
    private Task<T> WithPipelineAsync<T>(Func<DraftWorker, Task<T>> body) =>
        WithPipelineAsync(1, TimeSpan.FromMilliseconds(1), workers => body(workers[0]));

    private async Task<T> WithPipelineAsync<T>(int devices, TimeSpan batchWait, Func<IReadOnlyList<DraftWorker>, Task<T>> body)
    {
        var log = new ErrorLog();
        await using var broker = await EmbeddedBroker.StartAsync();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "tf-verifier", BatchWait = batchWait }, pair.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(verifier.KvBudget.CountsPool); // a slot-signature target: the budget counts its pool
        var workers = new List<DraftWorker>();
        try
        {
            for (var i = 0; i < devices; i++)
            {
                var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = $"tf-device-{i}" }, pair.Draft, log.CreateLogger<DraftWorker>());
                workers.Add(worker);
                await worker.StartAsync(CancellationToken.None);
            }

            var result = await body(workers);
            Assert.InRange(verifier.KvPoolBytes, 1, verifier.KvBudget.BudgetBytes); // the pool was used, within the budget
            foreach (var error in log.Errors.Take(3))
            {
                output.WriteLine(error);
            }

            Assert.Empty(log.Errors);
            return result;
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.DisposeAsync();
            }

            await verifier.StopAsync(CancellationToken.None);
        }
    }

    private static SessionSettings Settings(string session, DecodingMode mode, float temperature, int tokens, ulong seed = 9) =>
        Pipeline.Settings(session, mode, temperature, tokens, seed);

    [Fact]
    public async Task Greedy_EveryWireMode_ByteIdenticalToTargetOnly()
    {
        const int tokens = 160;
        var prompt = pair.Tokenizer.Encode("The meaning of life is");
        var reference = Autoregressive.Generate(pair.Target, prompt, SamplingParams.Greedy, 0, "ref", tokens);
        await WithPipelineAsync(async worker =>
        {
            foreach (var mode in Enum.GetValues<DecodingMode>())
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
                var report = await worker.GenerateAsync(prompt, Settings($"greedy-{mode}", mode, 0f, tokens), null, cts.Token);
                Assert.Equal(reference, report.Tokens);
                Assert.True(report.Rounds < tokens, $"{mode}: {report.Rounds} rounds for {tokens} tokens means nothing was accepted");
                output.WriteLine($"{mode}: acceptance {report.AcceptanceRate:P1}, {report.Rounds} rounds");
            }

            return 0;
        });
        output.WriteLine(((HfBpeTokenizer)pair.Tokenizer).Decode(reference));
    }

    [Fact]
    public async Task Greedy_ConcurrentDevices_BatchedVerificationStaysExact()
    {
        string[] prompts = ["The meaning of life is", "Q:\tWhy", "A computer never", "x"];
        var references = prompts.Select(p => Autoregressive.Generate(pair.Target, pair.Tokenizer.Encode(p), SamplingParams.Greedy, 0, "ref", 120)).ToList();
        var reports = await WithPipelineAsync(prompts.Length, TimeSpan.FromMilliseconds(20), async workers =>
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            return await Task.WhenAll(workers.Select((w, i) =>
                w.GenerateAsync(pair.Tokenizer.Encode(prompts[i]), Settings($"c{i}", DecodingMode.Greedy, 0f, 120), null, cts.Token)));
        });
        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(references[i], reports[i].Tokens);
        }

        var batch = reports.Max(r => r.MeanBatch);
        output.WriteLine($"mean verifier batch sizes: {string.Join(", ", reports.Select(r => r.MeanBatch.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)))}");
        Assert.True(batch > 1, $"no round was verified in a batch (mean batch {batch})");
    }

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public async Task Sampling_SameSeed_SameTextAndRealisticAcceptance(DecodingMode mode)
    {
        var prompt = pair.Tokenizer.Encode("A computer");
        await WithPipelineAsync(async worker =>
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var first = await worker.GenerateAsync(prompt, Settings("a", mode, 0.8f, 150, 11), null, cts.Token);
            var second = await worker.GenerateAsync(prompt, Settings("a", mode, 0.8f, 150, 11), null, cts.Token);
            var other = await worker.GenerateAsync(prompt, Settings("a", mode, 0.8f, 150, 12), null, cts.Token);
            Assert.Equal(first.Tokens, second.Tokens);
            Assert.NotEqual(first.Tokens, other.Tokens);
            Assert.InRange(first.AcceptanceRate, 0.3, 0.98);
            output.WriteLine($"{mode}: acceptance {first.AcceptanceRate:P1}");
            return 0;
        });
    }
}

/// <summary>A verifier refuses, when the session opens, a draft whose vocabulary has the target's size but another tokenizer.</summary>
public sealed class VocabularyIdentityTests(TinyTransformerPair pair) : IClassFixture<TinyTransformerPair>
{
    [Fact]
    public async Task Open_OtherTokenizerSameSize_RefusedNamingBoth_SameTokenizerOpens()
    {
        var targetDigest = VocabularyCheck.DigestOf(pair.Target);
        Assert.NotNull(targetDigest);
        Assert.Equal(targetDigest, VocabularyCheck.DigestOf(pair.Draft)); // built from the same tokenizer.json
        using var session = new DraftSession(pair.Draft, Pipeline.Settings("ok", DecodingMode.Greedy, 0f, 8, 1), [65]);
        var draftOpen = session.OpenRequest("digest-device");
        Assert.Equal(targetDigest, draftOpen.VocabularyDigest);

        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = "digest-verifier" },
            pair.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        try
        {
            await using var device = await RawClient.ConnectAsync(broker.Port, "digest-client", Contracts.Topics.TopicScheme.DeviceReplies("digest-device"));
            var rounds = Contracts.Topics.TopicScheme.VerifierRounds("digest-verifier", "digest-device");
            var replies = Contracts.Topics.TopicScheme.DeviceReplies("digest-device");

            var foreign = draftOpen with { SessionId = "foreign", VocabularyDigest = "0123456789abcdef" };
            await device.PublishAsync(rounds, Contracts.Wire.WireCodec.Encode(foreign), replies, [1]);
            var refusal = Contracts.Wire.WireCodec.Decode((await device.WaitForAsync(m => m.Correlation is [1])).Payload).Message;
            var error = Assert.IsType<ErrorReply>(refusal);
            Assert.Equal(ErrorCode.InvalidRequest, error.Code);
            Assert.Contains("0123456789abcdef", error.Message);
            Assert.Contains(targetDigest, error.Message);
            Assert.Contains("different tokenizers", error.Message);

            await device.PublishAsync(rounds, Contracts.Wire.WireCodec.Encode(draftOpen), replies, [2]);
            var opened = Contracts.Wire.WireCodec.Decode((await device.WaitForAsync(m => m.Correlation is [2])).Payload).Message;
            Assert.IsType<SessionOpened>(opened);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
        }
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
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
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The ladder's verifier-decoding rung: the verifier decodes up to K tokens per request and streams them down. The
/// text must equal target-only decoding (greedy, and sampling with the same seed and session), however the chunks are
/// split, duplicated, reordered, cut off or moved to another verifier.
/// </summary>
public sealed class StreamedDecodingTests(ITestOutputHelper output)
{
    private const string Prompt = "The meaning of life is";

    private static SessionSettings Settings(DecodingMode mode, float temperature, int tokens, string session) =>
        Pipeline.Settings(session, mode, temperature, tokens, seed: 21);

    private static int[] Reference(SessionSettings s) =>
        Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(Prompt), s.Sampling, s.Seed, s.SessionId, s.MaxTokens);

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f, 11)]
    [InlineData(DecodingMode.Rsr, 0.9f, 12)]
    [InlineData(DecodingMode.Dssd, 1.1f, 13)]
    public void Sessions_ChunksSplitDuplicatedReorderedCutAndFailedOver_EqualTargetOnly(DecodingMode mode, float temperature, int seed)
    {
        var settings = Settings(mode, temperature, 400, $"streams-{seed}");
        var random = new Random(seed);
        using var draft = new DraftSession(TestEnvironment.Draft, settings, TestEnvironment.Tokenizer.Encode(Prompt));
        var verifier = new VerifierSession(TestEnvironment.Target, draft.OpenRequest("dev"), "dev");
        var (resumes, failovers) = (0, 0);
        try
        {
            while (!draft.IsComplete)
            {
                var request = draft.PrepareStream(random.Next(1, 40), 4);
                Assert.Equal(RoundCheckKind.Ok, verifier.Check(request).Kind);
                var stream = verifier.StartStream(request);
                while (!stream.IsDecoded)
                {
                    TestEnvironment.Target.FeedBatch([verifier.BeginStreamStep()]);
                    verifier.CompleteStreamStep();
                }

                Assert.True(request.CommittedLength + request.Stream <= draft.PromptLength + settings.MaxTokens, "a stream went past max tokens");
                var chunks = Split(stream, verifier.Epoch, settings.SessionId, random);
                var committed = draft.Committed.Count;
                foreach (var chunk in chunks.Take(random.Next(chunks.Count + 1)))
                {
                    draft.ApplyChunk(chunk);
                }

                if (draft.IsStreaming && random.Next(4) == 0)
                {
                    // A verifier that failed: another one rebuilds the session from the prefix and streams the rest.
                    failovers++;
                    draft.ResetVerifier();
                    verifier.Dispose();
                    verifier = new VerifierSession(TestEnvironment.Target, draft.OpenRequest("dev"), "dev");
                    continue; // the next PrepareStream resumes the same round from what is committed
                }

                if (draft.IsStreaming)
                {
                    // The rest was lost: the device asks again from its committed length; the verifier resends without decoding.
                    resumes++;
                    var again = draft.ResumeStream();
                    var check = verifier.Check(again);
                    Assert.Equal(RoundCheckKind.Resume, check.Kind);
                    Assert.Equal(draft.Committed.Count - stream.Start, check.StreamFrom);
                    var rest = new TokenChunk { SessionId = settings.SessionId, Epoch = verifier.Epoch, Round = stream.Round, Index = stream.Start + check.StreamFrom, Tokens = [.. stream.Tokens.Skip(check.StreamFrom)] };
                    Assert.Equal(RoundStepKind.Committed, draft.ApplyChunk(rest).Kind);
                }

                Assert.True(draft.Committed.Count >= committed);
            }
        }
        finally
        {
            verifier.Dispose();
        }

        Assert.Equal(Reference(settings), draft.Committed.Skip(draft.PromptLength).ToArray());
        Assert.True(resumes > 0 && failovers > 0, $"resumes {resumes}, failovers {failovers}");
    }

    [Fact]
    public void Sessions_BadStreamedRounds_RefusedWithReasonAndNothingChanges()
    {
        var settings = Settings(DecodingMode.Greedy, 0f, 100, "bad-streams");
        using var draft = new DraftSession(TestEnvironment.Draft, settings, TestEnvironment.Tokenizer.Encode(Prompt));
        using var verifier = new VerifierSession(TestEnvironment.Target, draft.OpenRequest("dev"), "dev");
        var request = draft.PrepareStream(8, 0);
        var refused = new[]
        {
            request with { Stream = VerifierSession.MaxStream + 1 },
            request with { Stream = 101 }, // past the session's max tokens
            request with { Stream = -3 },
            request with { Draft = [5], Stream = 8 },
        };
        foreach (var bad in refused)
        {
            var check = verifier.Check(bad);
            Assert.Equal((RoundCheckKind.Error, ErrorCode.InvalidRequest), (check.Kind, check.Code));
            Assert.False(string.IsNullOrEmpty(check.Reason));
        }

        Assert.Null(verifier.Stream);
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(request).Kind);
        var stream = verifier.StartStream(request);
        TestEnvironment.Target.FeedBatch([verifier.BeginStreamStep()]);
        verifier.CompleteStreamStep();
        Assert.Equal(ErrorCode.InvalidRequest, verifier.Check(request with { Stream = 9 }).Code); // another range of the same round
        Assert.Equal(ErrorCode.PrefixMismatch, verifier.Check(request with { PrefixDigest = request.PrefixDigest ^ 1 }).Code);
        Assert.Equal(ErrorCode.PrefixMismatch, verifier.Check(request with { CommittedLength = request.CommittedLength + 2, Stream = 6 }).Code); // claims more than was sent
        Assert.Equal(RoundCheckKind.Resume, verifier.Check(request).Kind);
        Assert.Single(stream.Tokens);

        // A chunk for another round, epoch or session is ignored; one outside the round or the vocabulary is refused.
        var chunk = new TokenChunk { SessionId = settings.SessionId, Epoch = draft.Epoch, Round = request.Round, Index = request.CommittedLength, Tokens = [.. stream.Tokens] };
        Assert.Equal(RoundStepKind.Ignored, draft.ApplyChunk(chunk with { Round = 7 }).Kind);
        Assert.Equal(RoundStepKind.Ignored, draft.ApplyChunk(chunk with { Epoch = 9 }).Kind);
        Assert.Throws<ProtocolViolationException>(() => draft.ApplyChunk(chunk with { Index = request.CommittedLength + 8 }));
        Assert.Throws<ProtocolViolationException>(() => draft.ApplyChunk(chunk with { Tokens = [TestEnvironment.Target.VocabSize] }));
        Assert.Equal(draft.PromptLength, draft.Committed.Count);
        Assert.Equal((RoundStepKind.Streaming, 1), (draft.ApplyChunk(chunk).Kind, draft.Committed.Count - draft.PromptLength));
        Assert.Throws<ProtocolViolationException>(() => draft.ApplyChunk(chunk with { Tokens = [(stream.Tokens[0] + 1) % TestEnvironment.Target.VocabSize] }));
    }

    [Fact]
    public void Ladder_Pinned_FailuresAndSuccessesHoldItButALostLinkShowsOffline()
    {
        var ladder = new DegradationLadder(gamma: 8, adaptGamma: true, climbAfter: 1, pinned: DegradationLevel.VerifierDecoding);
        Assert.Equal((DegradationLevel.VerifierDecoding, 0), (ladder.Level, ladder.Gamma));
        ladder.Success();
        ladder.Failure();
        Assert.Equal(DegradationLevel.VerifierDecoding, ladder.Level);
        ladder.LinkDown();
        Assert.True(ladder.IsLossy);
        ladder.LinkUp();
        ladder.Success();
        Assert.Equal(DegradationLevel.VerifierDecoding, ladder.Level);
        var free = new DegradationLadder(gamma: 8, adaptGamma: true, climbAfter: 1);
        free.Failure();
        free.Failure();
        free.Failure();
        Assert.Equal(DegradationLevel.VerifierDecoding, free.Level);
        free.Success();
        Assert.Equal(DegradationLevel.GammaOne, free.Level); // climbing back works as before
    }

    /// <summary>The stream cut into chunks of random sizes, some sent twice, all shuffled.</summary>
    private static List<TokenChunk> Split(VerifierSession.DecodingStream stream, int epoch, string session, Random random)
    {
        var chunks = new List<TokenChunk>();
        for (var at = 0; at < stream.Tokens.Count;)
        {
            var n = Math.Min(random.Next(1, 6), stream.Tokens.Count - at);
            var chunk = new TokenChunk { SessionId = session, Epoch = epoch, Round = stream.Round, Index = stream.Start + at, Tokens = [.. stream.Tokens.Skip(at).Take(n)] };
            chunks.Add(chunk);
            if (random.Next(3) == 0)
            {
                chunks.Add(chunk);
            }

            at += n;
        }

        return [.. chunks.OrderBy(_ => random.Next())];
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f, 16)]
    [InlineData(DecodingMode.Greedy, 0f, 0)]
    [InlineData(DecodingMode.Rsr, 0.9f, 16)]
    [InlineData(DecodingMode.Dsd, 0.8f, 5)]
    public async Task PinnedVerifierDecoding_EqualsGenerate(DecodingMode mode, float temperature, int streamTokens)
    {
        const int tokens = 300;
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => Pinned(o, streamTokens));
        var report = await pipeline.GenerateAsync(Prompt, mode, temperature, tokens, seed: 21, session: "pinned");
        Assert.Equal(Reference(Settings(mode, temperature, tokens, "pinned")), report.Tokens);
        Assert.True(report.Faults.MillisAtLevel["verifier-decoding"] > 0 && report.Faults.MillisAtLevel["normal"] == 0);
        Assert.Equal(streamTokens == 0 ? tokens : (tokens + streamTokens - 1) / streamTokens, report.Rounds);
        Assert.Equal(0, report.Drafted);
        Assert.True(pipeline.Log.Errors.Count == 0, string.Join("\n", pipeline.Log.Errors));
        output.WriteLine($"{mode} K={streamTokens}: {report.Rounds} rounds, {report.TokensPerSecond:0} tokens/s, downlink {report.DownlinkPayloadBytes} B");
    }

    [Fact]
    public async Task PinnedVerifierDecoding_SamplingWithoutAdaptation_RefusedClearly()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => Pinned(o, 16) with { AdaptGammaInSampling = false });
        var ex = await Assert.ThrowsAsync<GenerationException>(() => pipeline.GenerateAsync(Prompt, DecodingMode.Rsr, 0.9f, 50));
        Assert.Contains("AdaptGammaInSampling", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f)]
    [InlineData(DecodingMode.Rsr, 1.2f)]
    public async Task PinnedVerifierDecoding_EveryMessageDuplicatedAndReordered_TextUnchanged(DecodingMode mode, float temperature)
    {
        const int tokens = 300;
        await using var broker = await EmbeddedBroker.StartAsync();
        var (_, types) = await DuplicateDeliveryTests.DuplicateEverything(broker, seed: 9);
        await using var noisy = await Pipeline.StartAsync(broker.Port, device: o => Pinned(o, 8), target: new SlowModel(TestEnvironment.Target, TimeSpan.FromMilliseconds(1)));
        var first = await noisy.GenerateAsync(Prompt, mode, temperature, tokens, seed: 21, session: "dup-stream");
        var second = await noisy.GenerateAsync(Prompt, mode, temperature, tokens, seed: 21, session: "dup-stream");
        var reference = Reference(Settings(mode, temperature, tokens, "dup-stream"));
        Assert.Equal(reference, first.Tokens);
        Assert.Equal(reference, second.Tokens);
        output.WriteLine($"{mode}: originals by type {string.Join(", ", types.Select(kv => $"{kv.Key}={kv.Value}"))}; verifier duplicates {noisy.Verifier.Stats.Duplicates}");
        Assert.True(types.GetValueOrDefault(nameof(TokenChunk)) > 0 && types.GetValueOrDefault(nameof(DraftRound)) > 0);
        Assert.True(noisy.Verifier.Stats.Duplicates > 0, "no streamed round was resent to the verifier");
        Assert.True(noisy.Log.Errors.Count == 0, string.Join("\n", noisy.Log.Errors));
    }

    [Fact]
    public async Task PinnedVerifierDecoding_LinkCutMidStream_NothingLostOrDuplicated()
    {
        const int tokens = 400;
        var settings = Settings(DecodingMode.Greedy, 0f, tokens, "cut-stream");
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var target = new SlowModel(TestEnvironment.Target, TimeSpan.FromMilliseconds(4));
        using var verifier = new IotDsd.Verifier.Hosting.VerifierService(
            new IotDsd.Verifier.Hosting.VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = "sv" }, target, log.CreateLogger<IotDsd.Verifier.Hosting.VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30));
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await link.StartAsync();
        var options = Pinned(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", link.Port), DeviceId = "cut-device", VerifierId = "sv" }, tokens) with
        {
            RequestTimeout = TimeSpan.FromSeconds(1),
            PublishTimeout = TimeSpan.FromSeconds(1),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
        };
        await using var worker = new DraftWorker(options, TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        var emitted = new List<int>();
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(Prompt), settings, t =>
        {
            lock (emitted)
            {
                emitted.Add(t);
            }
        }, null, CancellationToken.None);
        while (Count(emitted) < 60)
        {
            await Task.Delay(2);
        }

        link.Cut();
        var atCut = Count(emitted);
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        link.Restore();
        var report = await run.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(atCut < tokens, "the stream was over before the cut");
        Assert.Equal(Reference(settings), report.Tokens);
        Assert.Equal(report.Tokens, emitted); // every token shown once, in order
        Assert.Equal(1, report.Rounds); // one streamed round, resumed, not restarted
        Assert.True(report.Faults.LinkDrops >= 1 && report.Retries >= 1, $"drops {report.Faults.LinkDrops}, retries {report.Retries}");
        output.WriteLine($"cut at {atCut} of {tokens} tokens; retries {report.Retries}, verifier duplicates {verifier.Stats.Duplicates}, recovery ms {string.Join(", ", report.Faults.RecoveryMillis.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
        await verifier.StopAsync(CancellationToken.None);
    }

    private static int Count(List<int> list)
    {
        lock (list)
        {
            return list.Count;
        }
    }

    private static EdgeOptions Pinned(EdgeOptions o, int streamTokens) =>
        o with { PinnedLevel = DegradationLevel.VerifierDecoding, AdaptGammaInSampling = true, StreamTokens = streamTokens };
}

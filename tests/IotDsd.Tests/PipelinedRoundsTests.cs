using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Pipelined rounds on Mosquitto: greedy sends each round ahead of its predecessor's verdict, drafted on the predicted
/// outcome, and the text stays that of the target alone — with copies of the device's rounds arriving again and late,
/// with a conditional round reaching the verifier before the round it follows, across a cut link and a verifier that
/// goes away.
/// </summary>
public sealed class PipelinedRoundsTests(ITestOutputHelper output)
{
    private static int[] Reference(string prompt, int tokens) =>
        Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);

    [SkippableFact]
    public async Task Greedy_PipelinedByDefault_WithEveryRoundCopiedAndCopiesArrivingLate_TextEqualsGenerate()
    {
        const string prompt = "Once upon a time";
        const int tokens = 400;
        var reference = Reference(prompt, tokens);
        await using var mosquitto = await MosquittoProcess.TryStart();

        // Every round the device sends is published again at once, and once more when the next round comes (so that
        // copy lands after a later round): duplicates of ordinary and conditional rounds, old ones among new ones.
        await using var spy = await RawClient.ConnectAsync(mosquitto.Port, "pipe-spy", TopicScheme.VerifierRounds("test-verifier", "test-device"));
        var copies = 0;
        byte[]? previous = null;
        var copying = new List<Task>();
        var echoes = new Dictionary<string, int>(StringComparer.Ordinal); // the spy hears its own copies: not copied again
        spy.Arrived += (topic, payload) =>
        {
            if (WireCodec.Decode(payload).Message is not DraftRound)
            {
                return;
            }

            var key = Convert.ToBase64String(payload);
            lock (echoes)
            {
                if (echoes.TryGetValue(key, out var pending) && pending > 0)
                {
                    echoes[key] = pending - 1;
                    return;
                }

                echoes[key] = echoes.GetValueOrDefault(key) + 1;
                if (previous is { } before)
                {
                    var beforeKey = Convert.ToBase64String(before);
                    echoes[beforeKey] = echoes.GetValueOrDefault(beforeKey) + 1;
                }
            }

            var late = Interlocked.Exchange(ref previous, payload);
            Interlocked.Add(ref copies, late is null ? 1 : 2);
            lock (copying)
            {
                copying.Add(Task.Run(async () =>
                {
                    await spy.PublishAsync(topic, payload, TopicScheme.DeviceReplies("test-device"), BitConverter.GetBytes(Random.Shared.NextInt64()));
                    if (late is not null)
                    {
                        await spy.PublishAsync(topic, late, TopicScheme.DeviceReplies("test-device"), BitConverter.GetBytes(Random.Shared.NextInt64()));
                    }
                }));
            }
        };

        await using (var pipelined = await Pipeline.StartAsync(mosquitto.Port, device: o => o with { PipelineMinRoundTripMs = 0, Shape = RoundShape.Chain(4) with { Pipeline = 1 } }))
        {
            var report = await pipelined.GenerateAsync(prompt, DecodingMode.Greedy, 0f, tokens, session: "pipe");
            output.WriteLine($"pipelined: {report.Rounds} rounds, {report.RoundsAhead} sent ahead, {report.RoundsAheadHeld} held, {copies} copies, verifier duplicates {pipelined.Verifier.Stats.Duplicates}");
            Assert.Equal(reference, report.Tokens);
            Assert.True(report.RoundsAheadHeld > 0, "no round sent ahead was ever verified");
            Assert.True(report.RoundsAhead > report.RoundsAheadHeld, "no prediction failed, so no round was drafted again");
            Assert.True(copies > report.Rounds && copies < 4 * (report.Rounds + report.RoundsAhead + report.Retries + 4), $"{copies} copies for {report.Rounds} rounds");
            Assert.True(pipelined.Verifier.Stats.Duplicates > 0);
            Assert.True(pipelined.Log.Errors.Count == 0, string.Join("\n", pipelined.Log.Errors));
        }

        await using var sequential = await Pipeline.StartAsync(mosquitto.Port, device: o => o with { Sequential = true });
        var baseline = await sequential.GenerateAsync(prompt, DecodingMode.Greedy, 0f, tokens, session: "seq");
        Assert.Equal(reference, baseline.Tokens);
        Assert.Equal(0, baseline.RoundsAhead);
        Task[] pending;
        lock (copying)
        {
            pending = [.. copying];
        }

        await Task.WhenAll(pending);
    }

    [SkippableFact]
    public async Task ConditionalRoundArrivingFirst_IsHeldAndVerifiedAfterItsRound_AWrongPredictionIsAnsweredConditionUnmet()
    {
        await using var mosquitto = await MosquittoProcess.TryStart();
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(mosquitto.Port, "hold-v", log);
        const string device = "raw-device";
        await using var raw = await RawClient.ConnectAsync(mosquitto.Port, device, TopicScheme.DeviceReplies(device));
        var rounds = TopicScheme.VerifierRounds("hold-v", device);
        long next = 0;

        async Task<object> Send(object message)
        {
            var id = BitConverter.GetBytes(Interlocked.Increment(ref next));
            await raw.PublishAsync(rounds, WireCodec.Encode(message), TopicScheme.DeviceReplies(device), id);
            return id;
        }

        async Task<T> Reply<T>(object id)
        {
            var reply = await raw.WaitForAsync(m => m.Correlation is { } c && c.AsSpan().SequenceEqual((byte[])id));
            return Assert.IsType<T>(WireCodec.Decode(reply.Payload).Message);
        }

        // The target drafts for itself: every prediction holds unless the test breaks one.
        var settings = new SessionSettings { SessionId = "held", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 3, MaxTokens = 64, Gamma = 4 };
        using var session = new DraftSession(TestEnvironment.Target, settings, TestEnvironment.Tokenizer.Encode("The sea"));
        await Reply<SessionOpened>(await Send(session.OpenRequest(device)));

        var first = session.PrepareRound(4, 1);
        var ahead = Assert.Single(session.PrepareAhead(4));
        var aheadId = await Send(ahead); // the conditional round first: held, as round 1 is not verified yet
        var firstId = await Send(first);
        var v1 = await Reply<Verdict>(firstId);
        var v2 = await Reply<Verdict>(aheadId); // released right after round 1, with nothing else arriving
        Assert.Equal((1L, 4, VerdictKind.Token), (v1.Round, v1.Accepted, v1.Kind));
        Assert.Equal((2L, 4, VerdictKind.Token), (v2.Round, v2.Accepted, v2.Kind));
        Assert.Equal(RoundStepKind.Committed, session.Apply(v1).Kind);
        Assert.Same(ahead, session.PromoteAhead());
        Assert.Equal(RoundStepKind.Committed, session.Apply(v2).Kind);
        var copy = await Reply<Verdict>(await Send(ahead)); // a copy after it was verified: the same verdict
        Assert.Equal((v2.Round, v2.Accepted, v2.Token), (copy.Round, copy.Accepted, copy.Token));

        // A prediction that will not come true (another bonus token), held and then answered short; the real one verified.
        var third = session.PrepareRound(4, 1);
        var real = Assert.Single(session.PrepareAhead(4));
        var wrong = real with { Pending = [(real.Pending[0] + 1) % TestEnvironment.Target.VocabSize] };
        var wrongId = await Send(wrong);
        var thirdId = await Send(third);
        var v3 = await Reply<Verdict>(thirdId);
        var unmet = await Reply<Verdict>(wrongId);
        Assert.Equal((real.Round, VerdictKind.ConditionUnmet), (unmet.Round, unmet.Kind));
        Assert.Equal(RoundStepKind.Committed, session.Apply(v3).Kind);
        Assert.Same(real, session.PromoteAhead());
        var v4 = await Reply<Verdict>(await Send(real)); // not answered from a cache: verified
        Assert.Equal((real.Round, VerdictKind.Token, 4), (v4.Round, v4.Kind, v4.Accepted));
        Assert.Equal(RoundStepKind.Committed, session.Apply(v4).Kind);
        var reference = Reference("The sea", session.Generated);
        Assert.Equal(reference, session.Committed.Skip(session.PromptLength));
        Assert.True(log.Errors.Count == 0, string.Join("\n", log.Errors));
        await verifier.StopAsync(CancellationToken.None);
    }

    [SkippableFact]
    public async Task Greedy_Pipelined_AcrossACutLinkAndAVerifierThatStops_TextEqualsGenerate()
    {
        const string prompt = "A little dog";
        const int tokens = 3000;
        var reference = Reference(prompt, tokens);
        await using var mosquitto = await MosquittoProcess.TryStart();
        var log = new ErrorLog();
        var a = await FaultRig.StartVerifierAsync(mosquitto.Port, "pipe-a", log);
        await using var link = new LinkEmulator(0, "127.0.0.1", mosquitto.Port);
        var slow = new LinkProfile { Delay = TimeSpan.FromMilliseconds(2) };
        link.Configure(slow, slow);
        await link.StartAsync();
        await using var worker = await FaultRig.StartDeviceAsync(link.Port, "pipe-device", null, log, TimeSpan.FromSeconds(1), o => o with { PipelineMinRoundTripMs = 0, Shape = RoundShape.Chain(4) with { Pipeline = 1 } });
        var committed = 0;
        var settings = new SessionSettings { SessionId = "pf", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens, Gamma = 4 };
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        async Task Until(int count)
        {
            while (Volatile.Read(ref committed) < count && !run.IsCompleted)
            {
                await Task.Delay(2);
            }

            if (run.IsCompleted)
            {
                var early = await run; // a failed generation throws here
                Assert.Fail($"the generation ended ({early.Tokens.Count} tokens) before token {count}");
            }
        }

        using var b = await FaultRig.StartVerifierAsync(mosquitto.Port, "pipe-b", log);
        await Until(200);
        link.Cut(); // the device reconnects and replays what was in flight
        await Task.Delay(300);
        link.Restore();
        await Until(Volatile.Read(ref committed) + 200);
        await a.StopAsync(CancellationToken.None); // its offline status moves the session to pipe-b
        a.Dispose();
        var report = await run.WaitAsync(TimeSpan.FromMinutes(3));
        output.WriteLine($"rounds {report.Rounds}, ahead {report.RoundsAhead} (held {report.RoundsAheadHeld}), link drops {report.Faults.LinkDrops}, reopens {report.Reopens}, retries {report.Retries}");
        Assert.Equal(reference, report.Tokens);
        Assert.Equal("pipe-b", report.VerifierId);
        Assert.True(report.Faults.LinkDrops >= 1, "the link was never cut under the device");
        Assert.True(report.RoundsAheadHeld > 0, "no round sent ahead was ever verified");
        await b.StopAsync(CancellationToken.None);
    }
}

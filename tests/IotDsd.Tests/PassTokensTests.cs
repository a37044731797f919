using IotDsd.Contracts.Messages;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// Each verdict says how many tokens its forward pass fed (<c>Verdict[14]</c>) and the verifier's pass cost line
/// (<c>[15]</c>, <c>[16]</c>), what a device prices rounds with (docs/protocol.md §6): a lone session's pass feeds exactly
/// what its round carried.
/// </summary>
public sealed class PassTokensTests
{
    [Fact]
    public void PassCost_Measure_GivesALineBeforeAnyRound()
    {
        var cost = new IotDsd.Core.Adaptive.PassCost();
        Assert.Equal((0f, 0f), cost.Line);
        cost.Measure(TestEnvironment.Target);
        var (fixedMs, perTokenMs) = cost.Line;
        Assert.True(fixedMs >= 0 && perTokenMs >= 0 && fixedMs + (16 * perTokenMs) > 0, $"line {fixedMs} + {perTokenMs}/token");
    }

    [Fact]
    public async Task Verdicts_LoneSession_ReportTheTokensItsRoundsFedAndTheCostLine()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var watch = await WireWatch.StartAsync(broker.Port, "pass-device");
        await using var pipeline = await Pipeline.StartAsync(broker.Port, deviceId: "pass-device", verifierId: "pass-verifier", pinVerifier: true,
            device: o => o with { Sequential = true });
        var report = await pipeline.GenerateAsync("The meaning of life is", DecodingMode.Greedy, 0f, 60, session: "pass");
        Assert.Equal(60, report.Tokens.Count);

        var seen = watch.Seen.Select(s => s.Message).ToList();
        var rounds = seen.OfType<DraftRound>().GroupBy(r => r.Round).ToDictionary(g => g.Key, g => g.Last());
        var verdicts = seen.OfType<Verdict>().Where(v => v.Kind != VerdictKind.ConditionUnmet).ToList();
        Assert.True(verdicts.Count >= 10, $"{verdicts.Count} verdicts seen");
        Assert.All(verdicts, v =>
        {
            var round = rounds[v.Round];
            Assert.Equal(1, v.BatchSize);
            Assert.Equal(round.Pending.Length + round.Draft.Length, v.PassTokens);
            Assert.True(v.PassFixedMs >= 0 && v.PassPerTokenMs >= 0 && float.IsFinite(v.PassFixedMs) && float.IsFinite(v.PassPerTokenMs), $"line {v.PassFixedMs} + {v.PassPerTokenMs}/token");
        });

        // The verifier's cost line (Verdict[15], [16]) is there from the first pass: a pass costs something.
        Assert.All(verdicts, v => Assert.True(v.PassFixedMs + (v.PassPerTokenMs * v.PassTokens) > 0, "no pass cost line"));

        // SessionOpened[6–8]: the verifier's sessions and its line at open. The first open came before any round's
        // pass, but the verifier measured its passes at start; a second generation's open carries the line the first
        // one's passes refitted.
        var report2 = await pipeline.GenerateAsync("Once upon a time", DecodingMode.Greedy, 0f, 20, session: "pass-2");
        Assert.Equal(20, report2.Tokens.Count);
        var opens = watch.Seen.Select(s => s.Message).OfType<SessionOpened>().ToList();
        var first = opens.First(o => o.SessionId == "pass");
        var second = opens.Last(o => o.SessionId == "pass-2");
        Assert.Equal(1, first.Sessions);
        Assert.True(first.PassFixedMs + (first.PassPerTokenMs * 10) > 0, $"no line at the first open: {first.PassFixedMs} + {first.PassPerTokenMs}/token");
        Assert.Equal(1, second.Sessions); // the first session was closed
        Assert.True(second.PassFixedMs + (second.PassPerTokenMs * 10) > 0, $"no line at open: {second.PassFixedMs} + {second.PassPerTokenMs}/token");
    }
}

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
    }
}

using System.Text;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Presence;
using Xunit;

namespace IotDsd.Tests;

/// <summary>The load-aware choice of a verifier for a new session, and the load fields of the retained status.</summary>
public sealed class SessionPlacementTests
{
    private static string[] Keys(int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(i => $"dev{random.Next()}/s{i}")];
    }

    private static Dictionary<string, int> Split(IEnumerable<string> keys, params (string Id, double Load)[] verifiers) =>
        keys.Select(k => SessionPlacement.Choose(verifiers, k)!).GroupBy(v => v).ToDictionary(g => g.Key, g => g.Count());

    [Fact]
    public void Choose_NoCandidates_Null() => Assert.Null(SessionPlacement.Choose([], "k"));

    [Fact]
    public void Choose_SameKeyAndLoads_SameVerifierWhateverTheOrder()
    {
        foreach (var key in Keys(200, 1))
        {
            var a = SessionPlacement.Choose([("v-a", 1), ("v-b", 0), ("v-c", 2)], key);
            var b = SessionPlacement.Choose([("v-c", 2), ("v-a", 1), ("v-b", 0)], key);
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void Choose_OneClearlyBusier_NeverGetsNewSessions()
    {
        var split = Split(Keys(3000, 2), ("v-a", 10), ("v-b", 0), ("v-c", 0.5));
        Assert.False(split.ContainsKey("v-a"));
        Assert.InRange(split["v-b"], 1500, 1900); // weights 1 and 0.875 within the slack
        Assert.InRange(split["v-c"], 1100, 1500);
    }

    [Fact]
    public void Choose_EqualLoads_SpreadEvenly()
    {
        var split = Split(Keys(3000, 3), ("v-a", 0), ("v-b", 0), ("v-c", 0));
        Assert.All(split.Values, n => Assert.InRange(n, 900, 1100));
    }

    [Fact]
    public void Choose_WithinSlack_FavoursTheLessLoadedTwoToOne()
    {
        // Slack is 2 here: a verifier 2 above the least weighs half as much.
        var split = Split(Keys(3000, 4), ("v-a", 2), ("v-b", 0));
        Assert.InRange(split["v-b"] / 3000.0, 0.62, 0.71);
    }

    [Fact]
    public void Choose_BeyondSlack_ShareFallsOffThenStops()
    {
        // 5 is 2.5 slacks above 0: weight 0.5·e^-1.5 ≈ 0.11, so about a tenth of new sessions; 12 is past the cut-off.
        var split = Split(Keys(3000, 8), ("v-a", 5), ("v-b", 0));
        Assert.InRange(split["v-a"] / 3000.0, 0.07, 0.13);
        Assert.False(Split(Keys(3000, 8), ("v-a", 12), ("v-b", 0)).ContainsKey("v-a"));
        Assert.Equal(1, SessionPlacement.Weight(0));
        Assert.Equal(0.5, SessionPlacement.Weight(1));
        Assert.True(SessionPlacement.Weight(5) < SessionPlacement.MinWeight);
    }

    [Fact]
    public void Choose_BurstOnStaleLoads_SpreadsOverTheNearEqualOnes()
    {
        // 30 devices at once, all seeing v-a hold 8 sessions and the others idle: none piles onto one verifier.
        var split = Split(Keys(30, 5), ("v-a", 8), ("v-b", 0), ("v-c", 0));
        Assert.InRange(split.GetValueOrDefault("v-a"), 0, 2);
        Assert.InRange(split["v-b"], 10, 20);
        Assert.InRange(split["v-c"], 10, 20);
    }

    [Fact]
    public void Choose_LoadsSeenAfterEachPlacement_EndBalanced()
    {
        // With fresh loads every placement, 60 sessions on three verifiers (one starting with 12) end within the slack.
        var loads = new Dictionary<string, double> { ["v-a"] = 12, ["v-b"] = 0, ["v-c"] = 0 };
        foreach (var key in Keys(60, 6))
        {
            loads[SessionPlacement.Choose([.. loads.Select(kv => (kv.Key, kv.Value))], key)!]++;
        }

        Assert.Equal(72, loads.Values.Sum());
        Assert.True(loads.Values.Max() - loads.Values.Min() <= SessionPlacement.Slack(loads.Values.Min()) + 1, string.Join(", ", loads));
    }

    [Fact]
    public void Choose_GarbageLoads_CountAsIdle()
    {
        Assert.Equal("v-b", SessionPlacement.Choose([("v-a", 5), ("v-b", double.NaN)], "k"));
        Assert.Equal("v-b", SessionPlacement.Choose([("v-a", 5), ("v-b", -3)], "k"));
    }

    [Fact]
    public void VerifierLoad_Of_SessionsPerWeightInflatedByBusy()
    {
        Assert.Equal(8, VerifierLoad.Of(4, 2, 1.5, 1, 1, 100).Score);
        Assert.Equal(2, VerifierLoad.Of(4, 2, 1.5, 0, 2, 100).Score);
        Assert.Equal(6, VerifierLoad.Of(4, 30, 1.5, 0.5, 1, 100).Score); // the queue depth is shown, not scored
        Assert.Equal(1, VerifierLoad.Of(4, 2, 1.5, 7, 1, 100).Utilisation); // clamped
        Assert.True(VerifierLoad.Of(100, 0, 0, 0, 1, 100).Full);
        Assert.False(VerifierLoad.Of(99, 0, 0, 0, 1, 100).Full);
    }

    [Fact]
    public void PresencePayload_LoadField_AdditiveBothWays()
    {
        // An older status (no load) parses and counts as idle; a newer one keeps every older field where it was.
        var old = PresencePayload.TryParse(Encoding.UTF8.GetBytes("""{"state":"online","role":"verifier","id":"v1","connection":3,"version":"0.1.0","protocol":1,"model":"m"}"""));
        Assert.NotNull(old);
        Assert.Null(old.Load);
        var json = new PresencePayload { Role = "verifier", Id = "v2", Connection = 4, Load = VerifierLoad.Of(3, 1, 2.5, 0.5, 1, 10) }.ToJson();
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        Assert.Equal("online", doc.RootElement.GetProperty("state").GetString());
        Assert.Equal(4, doc.RootElement.GetProperty("connection").GetInt64());
        Assert.Equal(4.5, doc.RootElement.GetProperty("load").GetProperty("score").GetDouble());
        Assert.Equal(3, PresencePayload.TryParse(json)!.Load!.Sessions);
    }

    [Fact]
    public void Pick_FullOrRefusedVerifiers_LeftOutWhileAnotherIsOpen()
    {
        var directory = new VerifierDirectory();
        void Status(string id, VerifierLoad? load) =>
            directory.Update(TopicScheme.VerifierStatus(id), new PresencePayload { Role = "verifier", Id = id, Load = load }.ToJson());
        Status("v-full", VerifierLoad.Of(10, 0, 0, 0, 1, 10));
        Status("v-busy", VerifierLoad.Of(9, 0, 0, 0, 1, 100));
        Assert.All(Keys(50, 7), k => Assert.Equal("v-busy", directory.Pick(k)));
        Assert.All(Keys(50, 7), k => Assert.Equal("v-full", directory.Pick(k, new HashSet<string> { "v-busy" })));
        Status("v-old", null); // an older verifier without load counts as idle
        Assert.All(Keys(50, 7), k => Assert.Equal("v-old", directory.Pick(k)));
        Assert.Null(directory.Pick("k", new HashSet<string> { "v-full", "v-busy", "v-old" }));
    }
}

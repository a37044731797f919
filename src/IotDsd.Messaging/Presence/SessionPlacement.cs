namespace IotDsd.Messaging.Presence;

/// <summary>
/// Where a new session goes: to the least-loaded live verifier. Each verifier gets a weight from its load's excess
/// over the least, in units of a slack (<see cref="Slack"/>: two sessions, or half the least load): 1 at the
/// least, falling linearly to 1/2 at one slack (near-equal), then halving about every 0.7 slack; below 1 % (about
/// five slacks above the least) it takes no new session at all. The session goes by weighted rendezvous hashing of
/// (verifier, session key). So the choice is deterministic for a key (reproducible, and every retry of one session
/// agrees), yet a burst of devices that all see the same, possibly stale, loads spreads in proportion to the weights
/// instead of piling onto one verifier, while a clearly busier verifier waits until the others catch up with it.
/// </summary>
public static class SessionPlacement
{
    /// <summary>The verifier for <paramref name="sessionKey"/>, or null when there is no candidate.</summary>
    public static string? Choose(IReadOnlyList<(string Id, double Load)> candidates, string sessionKey)
    {
        if (candidates.Count == 0)
        {
            return null;
        }

        var least = double.PositiveInfinity;
        foreach (var (_, load) in candidates)
        {
            least = Math.Min(least, Clean(load));
        }

        var slack = Slack(least);
        string? best = null;
        var bestKey = double.NegativeInfinity;
        ulong bestHash = 0;
        foreach (var (id, load) in candidates)
        {
            var weight = Weight((Clean(load) - least) / slack);
            if (weight < MinWeight)
            {
                continue;
            }

            var hash = VerifierDirectory.Score(id, sessionKey);
            var key = WeightedKey(hash, weight);
            if (best is null || key > bestKey || (key == bestKey && (hash > bestHash || (hash == bestHash && string.CompareOrdinal(id, best) < 0))))
            {
                (best, bestKey, bestHash) = (id, key, hash);
            }
        }

        return best;
    }

    /// <summary>How far above the least load a verifier still counts as near-equal.</summary>
    public static double Slack(double least) => Math.Max(2, 0.5 * least);

    /// <summary>Below this weight a verifier takes no new session.</summary>
    public const double MinWeight = 0.01;

    /// <summary>The weight of a verifier <paramref name="slacks"/> slacks above the least load.</summary>
    public static double Weight(double slacks) => slacks <= 1 ? 1 - (slacks / 2) : 0.5 * Math.Exp(1 - slacks);

    /// <summary>Weighted rendezvous key: -w / ln(u) with u uniform in (0, 1) from the hash; the largest key wins with
    /// probability w / Σw over random session keys.</summary>
    private static double WeightedKey(ulong hash, double weight)
    {
        var u = ((hash >> 11) + 0.5) / (1UL << 53);
        return -weight / Math.Log(u);
    }

    private static double Clean(double load) => double.IsFinite(load) && load > 0 ? load : 0;
}

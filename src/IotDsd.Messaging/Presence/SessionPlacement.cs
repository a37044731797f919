namespace IotDsd.Messaging.Presence;

/// <summary>
/// Where a new session goes: to the least-loaded live verifier. Verifiers whose load lies within a slack of the
/// least (<see cref="Slack"/>: two sessions, or a fifth of the least load) count as near-equal; among them the session
/// goes by weighted rendezvous hashing of (verifier, session key), with weights falling from 1 at the least load to
/// 1/2 at the edge of the slack. So the choice is deterministic for a key (reproducible, and every retry of one
/// session agrees), yet a burst of devices that all see the same stale loads spreads over the near-equal verifiers
/// (each wins with probability in proportion to its weight) instead of piling onto one; a clearly busier verifier
/// takes no new session until the others catch up with it.
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
            var excess = Clean(load) - least;
            if (excess > slack)
            {
                continue;
            }

            var hash = VerifierDirectory.Score(id, sessionKey);
            var key = WeightedKey(hash, 1 - (excess / (2 * slack)));
            if (best is null || key > bestKey || (key == bestKey && (hash > bestHash || (hash == bestHash && string.CompareOrdinal(id, best) < 0))))
            {
                (best, bestKey, bestHash) = (id, key, hash);
            }
        }

        return best;
    }

    /// <summary>How far above the least load a verifier still counts as near-equal.</summary>
    public static double Slack(double least) => Math.Max(2, 0.2 * least);

    /// <summary>Weighted rendezvous key: -w / ln(u) with u uniform in (0, 1) from the hash; the largest key wins with
    /// probability w / Σw over random session keys.</summary>
    private static double WeightedKey(ulong hash, double weight)
    {
        var u = ((hash >> 11) + 0.5) / (1UL << 53);
        return -weight / Math.Log(u);
    }

    private static double Clean(double load) => double.IsFinite(load) && load > 0 ? load : 0;
}

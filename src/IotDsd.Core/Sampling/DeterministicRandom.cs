namespace IotDsd.Core.Sampling;

/// <summary>Independent random streams used in a round; each has its own derivation so none can alias another.</summary>
public enum RandomStream : ulong
{
    /// <summary>Device: sampling d_i from Q_i.</summary>
    Draft = 1,

    /// <summary>Verifier: the uniform compared with P/Q for acceptance.</summary>
    Accept = 2,

    /// <summary>Whoever resamples the rejected position from the residual (verifier in dsd, device in dssd).</summary>
    Residual = 3,

    /// <summary>Verifier: the bonus token after full acceptance.</summary>
    Bonus = 4,

    /// <summary>Verifier (rsr): proposals drawn from P_j.</summary>
    Proposal = 5,

    /// <summary>Device (rsr): the uniform that accepts or rejects each proposal.</summary>
    ProposalAccept = 6,

    /// <summary>Target-only autoregressive sampling (the reference).</summary>
    Autoregressive = 7,
}

/// <summary>
/// Counter-based randomness (docs/protocol.md §4): every uniform is a pure function of
/// (seed, session, round, position, stream, index). A retried, duplicated or failed-over round draws the same numbers.
/// </summary>
public static class DeterministicRandom
{
    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public static double Uniform(ulong seed, ulong session, long round, long position, RandomStream stream, long index = 0)
    {
        var h = Mix(seed ^ 0x9E3779B97F4A7C15UL);
        h = Mix(h ^ session);
        h = Mix(h ^ (ulong)round);
        h = Mix(h ^ (ulong)position);
        h = Mix(h ^ (ulong)stream);
        h = Mix(h ^ (ulong)index);
        return (h >> 11) * (1.0 / (1UL << 53));
    }

    /// <summary>A stable 64-bit hash of a session id (FNV-1a over UTF-16 code units, then mixed).</summary>
    public static ulong SessionKey(string sessionId)
    {
        var h = 14695981039346656037UL;
        foreach (var c in sessionId)
        {
            h ^= c;
            h *= 1099511628211UL;
        }

        return Mix(h);
    }

    /// <summary>Derives the seed of sample <paramref name="index"/> of a multi-sample run.</summary>
    public static ulong SampleSeed(ulong seed, int index) => index == 0 ? seed : Mix(seed + (ulong)index * 0xD1B54A32D192ED03UL);

    /// <summary>SplitMix64 finaliser.</summary>
    public static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

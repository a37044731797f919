namespace IotDsd.Core.Sessions;

/// <summary>Incremental FNV-1a 64 digest of a committed token prefix; both sides compute it the same way.</summary>
public struct PrefixDigest
{
    private const ulong Offset = 14695981039346656037UL;
    private const ulong Prime = 1099511628211UL;

    /// <summary>The digest of the empty prefix.</summary>
    public static PrefixDigest Empty => new() { Value = Offset };

    /// <summary>The current digest.</summary>
    public ulong Value { get; private set; }

    /// <summary>Extends the digest by <paramref name="tokens"/>.</summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        var h = Value;
        foreach (var t in tokens)
        {
            var v = (uint)t;
            for (var b = 0; b < 4; b++)
            {
                h ^= (v >> (8 * b)) & 0xFF;
                h *= Prime;
            }
        }

        Value = h;
    }

    /// <summary>The digest of <paramref name="tokens"/>.</summary>
    public static ulong Of(ReadOnlySpan<int> tokens)
    {
        var d = Empty;
        d.Append(tokens);
        return d.Value;
    }
}

namespace IotDsd.Core.Sessions;

/// <summary>
/// Places streamed tokens (the <c>TokenChunk</c>s of a streamed round or of the server-only baseline) into a committed
/// sequence by position, up to an end position. The stream is lossless, so placement is strict:
/// <list type="bullet">
/// <item>a token already held at its position (committed, or waiting for a gap before it) is a duplicate delivery:
/// counted and ignored;</item>
/// <item>a token that arrives before the gap in front of it is filled waits, and is committed once the gap closes;</item>
/// <item>a chunk that reaches outside <c>[0, End)</c>, holds a token outside the vocabulary, or carries a token that
/// differs from the one already held at its position is a protocol violation: <see cref="Place"/> throws
/// <see cref="ProtocolViolationException"/> and changes nothing, and the caller counts and reports it.</item>
/// </list>
/// </summary>
public sealed class TokenPlacement
{
    private readonly List<int> _committed;
    private readonly Dictionary<int, int> _early = [];
    private readonly int _vocab;

    /// <param name="committed">The committed sequence; placement appends to it in order.</param>
    /// <param name="end">One past the last position the stream may cover.</param>
    /// <param name="vocab">Tokens must lie in <c>[0, vocab)</c>.</param>
    public TokenPlacement(List<int> committed, int end, int vocab)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(end, committed.Count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        _committed = committed;
        End = end;
        _vocab = vocab;
    }

    /// <summary>One past the last position the stream may cover.</summary>
    public int End { get; }

    /// <summary>Tokens delivered more than once (QoS 1 duplicates, or a resend of what had arrived); each was ignored.</summary>
    public long Duplicates { get; private set; }

    /// <summary>Tokens held: committed, or waiting for the gap before them.</summary>
    public int Held => _committed.Count + _early.Count;

    /// <summary>
    /// Places <paramref name="tokens"/> from position <paramref name="index"/>; returns how many tokens joined the
    /// committed sequence. Throws <see cref="ProtocolViolationException"/>, changing nothing, for a chunk outside the
    /// range or the vocabulary or one that conflicts with a token already held.
    /// </summary>
    public int Place(int index, IReadOnlyList<int> tokens)
    {
        if (index < 0 || (long)index + tokens.Count > End)
        {
            throw new ProtocolViolationException($"chunk covers {index}..{(long)index + tokens.Count}, the round streams up to {End}");
        }

        for (var i = 0; i < tokens.Count; i++)
        {
            var (at, t) = (index + i, tokens[i]);
            if ((uint)t >= (uint)_vocab)
            {
                throw new ProtocolViolationException($"streamed token {t} is outside the vocabulary of {_vocab}");
            }

            if ((at < _committed.Count && _committed[at] != t) || (_early.TryGetValue(at, out var held) && held != t))
            {
                throw new ProtocolViolationException($"streamed token at {at} differs from the one already received");
            }
        }

        var before = _committed.Count;
        for (var i = 0; i < tokens.Count; i++)
        {
            var at = index + i;
            if (at < _committed.Count || _early.ContainsKey(at))
            {
                Duplicates++;
            }
            else if (at > _committed.Count)
            {
                _early[at] = tokens[i];
            }
            else
            {
                _committed.Add(tokens[i]);
            }
        }

        while (_early.Remove(_committed.Count, out var next))
        {
            _committed.Add(next);
        }

        return _committed.Count - before;
    }
}

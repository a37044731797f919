using IotDsd.Contracts.Messages;

namespace IotDsd.Core.Sessions;

/// <summary>
/// Verifier-side decoding seen from the device: a round with no drafts that asks the verifier to decode up to K tokens
/// and stream them down. Chunks are placed by <see cref="TokenPlacement"/>: in order by position, a token already held is
/// ignored, one that arrives early waits for the gap before it, a conflicting one is a protocol violation. A resend asks from the committed length for the rest of the same range, so the
/// rounds cover the same positions however the stream was cut.
/// </summary>
public sealed partial class DraftSession
{
    private StreamedRound? _stream;

    /// <summary>True while a streamed round is outstanding (some of its tokens may be committed already).</summary>
    public bool IsStreaming => _stream is not null;

    /// <summary>
    /// Builds a streamed round of up to <paramref name="count"/> tokens (never past <see cref="SessionSettings.MaxTokens"/>),
    /// or, while one is outstanding, the request for the rest of it from the committed length.
    /// </summary>
    public DraftRound PrepareStream(int count, int proposals)
    {
        if (_stream is not { } s || s.Round != Round)
        {
            s = new StreamedRound(Round, new TokenPlacement(_committed, _committed.Count + Math.Clamp(count, 1, Math.Max(1, Settings.MaxTokens - Generated)), _vocab));
        }

        var request = BuildRound(0, proposals) with { Stream = s.End - _committed.Count };
        _stream = s;
        _outstanding = _outstanding! with { Request = request };
        return request;
    }

    /// <summary>The outstanding streamed round, asked again from the committed length (after a timeout or a lost link).</summary>
    public DraftRound ResumeStream() =>
        _stream is not null && _outstanding?.Request is DraftRound outstanding
            ? PrepareStream(0, outstanding.Proposals)
            : throw new InvalidOperationException("no streamed round is outstanding");

    /// <summary>
    /// Commits what a chunk adds. Chunks for anything but the outstanding streamed round are ignored; a malformed one
    /// throws <see cref="ProtocolViolationException"/> and changes nothing.
    /// </summary>
    public RoundStep ApplyChunk(TokenChunk chunk)
    {
        var s = _stream;
        if (s is null || s.Round != Round || chunk.SessionId != Settings.SessionId || chunk.Epoch != Epoch || chunk.Round != s.Round)
        {
            return RoundStep.Ignored;
        }

        var before = _committed.Count;
        s.Placement.Place(chunk.Index, chunk.Tokens);

        if (_sequence.Length > before)
        {
            _sequence.Truncate(before); // whatever the draft cache held past the committed text (draft-only text) is not it
        }

        if (_committed.Count < s.End && StopIndex() < 0)
        {
            return RoundStep.Streaming(before, _committed.Count - before);
        }

        // The whole range, or an end-of-sequence token that ends the generation before it.
        VerifierKnown = Math.Min(s.End, _committed.Count) - 1; // the verifier fed all but the last streamed token: that one is the next pending
        Rounds++;
        Round++;
        _outstanding = null;
        _stream = null;
        return RoundStep.Committed(before, _committed.Count - before);
    }

    private sealed record StreamedRound(long Round, TokenPlacement Placement)
    {
        public int End => Placement.End;
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>
/// Verifier-side decoding, the ladder's lossless rung below γ = 1 (docs/protocol.md §5): a round with no drafts asks the
/// verifier to decode <see cref="DraftRound.Stream"/> tokens itself, one forward pass per token (batched with other
/// sessions by the caller). Tokens are chosen exactly as target-only decoding chooses them — greedy argmax, or a sample
/// with the uniform of (seed, session, position) — so how a stream is split, resent, resumed or failed over never changes
/// them. The decoded tokens are kept until the next round, so a resent request is answered without decoding again.
/// </summary>
public sealed partial class VerifierSession
{
    /// <summary>Upper bound on the tokens one streamed round may ask for.</summary>
    public const int MaxStream = 1024;

    private DecodingStream? _stream;

    /// <summary>The stream of the current round (decoding or decoded), or null.</summary>
    public DecodingStream? Stream => _stream;

    /// <summary>Checks a request of the same epoch against the stream held; null: not about the stream (it is dropped
    /// when a later round starts), go on with the ordinary checks.</summary>
    private RoundCheck? CheckAgainstStream(DraftRound round)
    {
        var s = _stream!;
        if (round.Round < s.Round)
        {
            return RoundCheck.Stale;
        }

        if (round.Round > s.Round)
        {
            _stream = null; // a later round: the stream is over wherever it stands; Known and the digest match what was fed
            return null;
        }

        if (round.Stream == 0 || round.CommittedLength + round.Stream != s.Start + s.Total)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"round {round.Round} streams tokens {s.Start}..{s.Start + s.Total}; the request asks for another range");
        }

        var from = round.CommittedLength - s.Start;
        if (from < 0 || from > s.Decoded.Count)
        {
            return RoundCheck.Fail(ErrorCode.PrefixMismatch, $"verifier streamed {s.Decoded.Count} tokens from {s.Start}, the device claims {round.CommittedLength}; resend the prefix");
        }

        var digest = s.DigestAtStart;
        digest.Append(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.Decoded)[..from]);
        return digest.Value == round.PrefixDigest
            ? RoundCheck.Resume(from)
            : RoundCheck.Fail(ErrorCode.PrefixMismatch, "prefix digest differs from the verifier's stream; resend the prefix");
    }

    /// <summary>What a new streamed round must satisfy besides the ordinary checks.</summary>
    private RoundCheck? CheckStreamRequest(DraftRound round)
    {
        if (round.Draft.Length != 0)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, "a streamed round drafts nothing");
        }

        return round.Stream < 1 || round.Stream > Math.Min(MaxStream, Open.MaxTokens)
            ? RoundCheck.Fail(ErrorCode.InvalidRequest, $"a streamed round asks for 1 to {Math.Min(MaxStream, Open.MaxTokens)} tokens, got {round.Stream}")
            : null;
    }

    /// <summary>Starts decoding a checked streamed round; the caller then runs <see cref="BeginStreamStep"/> /
    /// <see cref="CompleteStreamStep"/> once per token.</summary>
    public DecodingStream StartStream(DraftRound round)
    {
        var digest = _digest;
        digest.Append(round.Pending);
        _stream = new DecodingStream(round.Round, round.CommittedLength, round.Stream, digest, round.Pending, new float[_vocab]);
        _lastRound = round.Round;
        _lastVerdict = null;
        _lastRejectedRow = null;
        _followUps.Clear();
        return _stream;
    }

    /// <summary>The forward pass of the next streamed token: the pending tokens first, then each decoded token.</summary>
    public FeedRequest BeginStreamStep()
    {
        var s = _stream ?? throw new InvalidOperationException("no stream is decoding");
        ReadOnlyMemory<int> tokens = s.Decoded.Count == 0 ? s.Pending : new[] { s.Decoded[^1] };
        return new FeedRequest(_sequence, tokens, s.Logits);
    }

    /// <summary>Chooses the next streamed token from the pass's logits; returns it.</summary>
    public int CompleteStreamStep()
    {
        var s = _stream ?? throw new InvalidOperationException("no stream is decoding");
        if (s.Decoded.Count == 0)
        {
            _digest = s.DigestAtStart;
            Known = s.Start;
        }
        else
        {
            _digest.Append([s.Decoded[^1]]);
            Known++;
        }

        var position = s.Start + s.Decoded.Count;
        var token = Autoregressive.Choose(s.Logits, Sampling, Open.Seed, _sessionKey, position, Sampling.IsGreedy ? default : s.Probs ??= new float[_vocab]);
        s.Decoded.Add(token);
        return token;
    }

    /// <summary>One streamed round: what it covers and the tokens decoded so far (read-only outside the session).</summary>
    public sealed class DecodingStream
    {
        internal DecodingStream(long round, int start, int total, PrefixDigest digestAtStart, int[] pending, float[] logits)
        {
            Round = round;
            Start = start;
            Total = total;
            DigestAtStart = digestAtStart;
            Pending = pending;
            Logits = logits;
        }

        public long Round { get; }

        /// <summary>Position of the first streamed token in the session's committed sequence.</summary>
        public int Start { get; }

        /// <summary>Tokens the round streams.</summary>
        public int Total { get; }

        /// <summary>Tokens decoded so far, in order.</summary>
        public IReadOnlyList<int> Tokens => Decoded;

        public bool IsDecoded => Decoded.Count >= Total;

        internal PrefixDigest DigestAtStart { get; }
        internal int[] Pending { get; }
        internal float[] Logits { get; }
        internal List<int> Decoded { get; } = [];
        internal float[]? Probs { get; set; }
    }
}

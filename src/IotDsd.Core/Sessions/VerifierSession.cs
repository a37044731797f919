using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>
/// The verifier side of one session: the target's cache, the verified prefix and its digest, and the last verdict
/// (so a duplicate round gets the verdict already sent). Rounds are checked, fed (possibly batched with other
/// sessions), then completed. No I/O.
/// </summary>
public sealed partial class VerifierSession : IDisposable
{
    /// <summary>Upper bound on rsr proposals per reply.</summary>
    public const int MaxProposals = 256;

    private readonly IModelSequence _sequence;
    private readonly ulong _sessionKey;
    private readonly int _vocab;
    private PrefixDigest _digest = PrefixDigest.Empty;
    private long _lastRound;
    private Verdict? _lastVerdict;
    private float[]? _lastRejectedRow;
    private long _lastRejectedPosition;
    private readonly Dictionary<int, Verdict> _followUps = [];

    public VerifierSession(ILanguageModel target, OpenSession open, string deviceId)
    {
        Open = open;
        DeviceId = deviceId;
        Sampling = SamplingParams.From(open.Sampling);
        _vocab = target.VocabSize;
        _sequence = target.CreateSequence();
        _sessionKey = DeterministicRandom.SessionKey(open.SessionId);
    }

    public OpenSession Open { get; }
    public string DeviceId { get; }
    public SamplingParams Sampling { get; }
    public int Epoch => Open.Epoch;

    /// <summary>Verified committed tokens the cache holds.</summary>
    public int Known { get; private set; }

    /// <summary>
    /// Position of the end-of-sequence token a verdict committed (an accepted draft or the verifier's own token), or
    /// null: once set, the generation is over and new rounds are refused (a duplicate still gets its verdict).
    /// </summary>
    public int? EndedAt { get; private set; }

    /// <summary>Last time (caller's clock) the session was used; for expiry.</summary>
    public long LastUsedTicks { get; set; }

    /// <summary>Checks a round against the session. Returns the verdict already sent for a duplicate.</summary>
    public RoundCheck Check(DraftRound round)
    {
        if (round.Epoch < Epoch)
        {
            // A late duplicate from before the device reopened: its answer no longer matters to anyone.
            return RoundCheck.Stale;
        }

        if (round.Epoch != Epoch)
        {
            return RoundCheck.Fail(ErrorCode.UnknownSession, $"session epoch is {Epoch}, round says {round.Epoch}; reopen the session");
        }

        if (CheckConditional(round) is { } conditional)
        {
            return conditional;
        }

        if (_stream is not null && CheckAgainstStream(round) is { } streamed)
        {
            return streamed;
        }

        if (_lastVerdict is not null && round.Round == _lastRound)
        {
            return RoundCheck.Duplicate(_lastVerdict);
        }

        if (round.Round < _lastRound)
        {
            return RoundCheck.Stale;
        }

        if (EndedAt is { } ended)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"the session ended at an end-of-sequence token (position {ended}); open a new session to generate more");
        }

        if (round.Stream != 0 && CheckStreamRequest(round) is { } badStream)
        {
            return badStream;
        }

        var gamma = round.Draft.Length;
        if (round.TreeParents is not null)
        {
            if (CheckTree(round) is { } badTree)
            {
                return badTree;
            }
        }
        else if (gamma > Open.MaxGamma)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"round drafts {gamma} tokens, the session allows {Open.MaxGamma}");
        }

        if (round.Pending.Length == 0)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, "round carries no pending token to verify from");
        }

        if (round.CommittedLength - round.Pending.Length != Known)
        {
            return RoundCheck.Fail(ErrorCode.PrefixMismatch, $"verifier holds {Known} tokens, round builds on {round.CommittedLength - round.Pending.Length}; resend the prefix");
        }

        if (!InVocab(round.Pending) || !InVocab(round.Draft))
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"token outside the vocabulary of {_vocab}");
        }

        var digest = _digest;
        digest.Append(round.Pending);
        if (digest.Value != round.PrefixDigest)
        {
            return RoundCheck.Fail(ErrorCode.PrefixMismatch, "prefix digest differs from the verifier's; resend the prefix");
        }

        switch (Open.Mode)
        {
            case DecodingMode.Dssd or DecodingMode.Rsr when round.DraftProbs is not { } q || q.Length != gamma || !AllProbabilities(q, positive: true):
                return RoundCheck.Fail(ErrorCode.InvalidRequest, $"{Open.Mode.Name()} needs one draft probability in (0, 1] per drafted token");
            case DecodingMode.Rsr when round.Proposals is < 1 or > MaxProposals:
                return RoundCheck.Fail(ErrorCode.InvalidRequest, $"rsr proposals must be between 1 and {MaxProposals}, got {round.Proposals}");
            case DecodingMode.Dsd when round.TreeParents is null && (round.DraftDistributions is not { } rows || rows.Length != gamma * _vocab * sizeof(float)
                || !AllProbabilities(MemoryMarshal.Cast<byte, float>(rows), positive: false)
                || !DraftedTokensPositive(MemoryMarshal.Cast<byte, float>(rows), round.Draft)):
                return RoundCheck.Fail(ErrorCode.InvalidRequest, $"dsd needs {gamma} draft rows of {_vocab} probabilities");
        }

        return RoundCheck.Ok;
    }

    private bool InVocab(int[] tokens)
    {
        foreach (var t in tokens)
        {
            if ((uint)t >= (uint)_vocab)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>dsd: Q_i(d_i) must be positive; a zero would make min(1, P/Q) accept d_i even where P(d_i) = 0.</summary>
    private bool DraftedTokensPositive(ReadOnlySpan<float> rows, int[] draft)
    {
        for (var i = 0; i < draft.Length; i++)
        {
            if (!(rows[(i * _vocab) + draft[i]] > 0f))
            {
                return false;
            }
        }

        return true;
    }

    private static bool AllProbabilities(ReadOnlySpan<float> values, bool positive)
    {
        foreach (var v in values)
        {
            if (!(v >= 0f && v <= 1.0001f) || (positive && v == 0f))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The forward pass a checked round needs: pending + drafts in, the last γ+1 rows out.</summary>
    public FeedRequest BeginFeed(DraftRound round)
    {
        if (round.TreeParents is { } parents)
        {
            return BeginTreeFeed(round, parents);
        }

        var tokens = new int[round.Pending.Length + round.Draft.Length];
        round.Pending.CopyTo(tokens, 0);
        round.Draft.CopyTo(tokens, round.Pending.Length);
        var logits = new float[(round.Draft.Length + 1) * _vocab];
        return new FeedRequest(_sequence, tokens, logits);
    }

    /// <summary>Decides a fed round, rolls the cache back to the accepted length and remembers the verdict.</summary>
    /// <remarks>
    /// <paramref name="rule"/> (chains) and <paramref name="siblingResidual"/> (trees) exist so tests can build broken
    /// variants; the product never passes them.
    /// </remarks>
    public Verdict Complete(
        DraftRound round, ReadOnlySpan<float> logits, int batchSize, int queueDepth, int verifyMicros, AcceptanceRule? rule = null, bool siblingResidual = true)
    {
        if (round.TreeParents is not null)
        {
            return CompleteTree(round, logits, batchSize, queueDepth, verifyMicros, siblingResidual);
        }

        var gamma = round.Draft.Length;
        var rows = new float[(gamma + 1) * _vocab];
        for (var i = 0; i <= gamma; i++)
        {
            Distribution.FromLogits(logits.Slice(i * _vocab, _vocab), Sampling, rows.AsSpan(i * _vocab, _vocab));
        }

        var random = new RoundRandom(Open.Seed, _sessionKey, round.Round);
        var firstPosition = round.CommittedLength;
        var draftRows = round.DraftDistributions is { } bytes ? MemoryMarshal.Cast<byte, float>(bytes) : default;
        var outcome = SpeculativeVerifier.Verify(Open.Mode, rows, _vocab, round.Draft, round.DraftProbs, draftRows, random, firstPosition, round.Proposals, rule);

        _sequence.Truncate(round.CommittedLength + outcome.Accepted);
        _lastRejectedRow = outcome.TargetRow;
        _lastRejectedPosition = firstPosition + outcome.Accepted;
        return Remember(round, round.Draft.AsSpan(0, outcome.Accepted), outcome.Kind == VerdictKind.Token ? outcome.Token : null, new Verdict
        {
            SessionId = Open.SessionId,
            Epoch = Epoch,
            Round = round.Round,
            Attempt = 0,
            Accepted = outcome.Accepted,
            Kind = outcome.Kind,
            Token = outcome.Token,
            TargetDistribution = outcome.Kind == VerdictKind.TargetDistribution ? MemoryMarshal.AsBytes(outcome.TargetRow.AsSpan()).ToArray() : null,
            ProposalTokens = outcome.ProposalTokens,
            ProposalProbs = outcome.ProposalProbs,
            BatchSize = batchSize,
            QueueDepth = queueDepth,
            VerifyMicros = verifyMicros,
        });
    }

    /// <summary>
    /// What every decided round (chain or tree) leaves behind, once the cache holds the committed prefix and the
    /// <paramref name="accepted"/> drafts: the digest, the verified length, the end of sequence, and the verdict and
    /// content a duplicate is answered from.
    /// </summary>
    private Verdict Remember(DraftRound round, ReadOnlySpan<int> accepted, int? token, Verdict verdict)
    {
        _digest.Append(round.Pending);
        _digest.Append(accepted);
        Known = round.CommittedLength + accepted.Length;
        _lastRound = round.Round;
        _lastContent = ContentOf(round);
        _followUps.Clear();
        EndedAt = EndOfSequence(round.CommittedLength, accepted, token);
        _lastVerdict = verdict;
        return verdict;
    }

    /// <summary>The position of the first end-of-sequence token a verdict commits (an accepted draft, then the verdict's
    /// own token), or null.</summary>
    private int? EndOfSequence(int start, ReadOnlySpan<int> accepted, int? token)
    {
        if (Open.StopTokens is not { Length: > 0 } stops)
        {
            return null;
        }

        for (var i = 0; i < accepted.Length; i++)
        {
            if (Array.IndexOf(stops, accepted[i]) >= 0)
            {
                return start + i;
            }
        }

        return token is { } t && Array.IndexOf(stops, t) >= 0 ? start + accepted.Length : null;
    }

    /// <summary>rsr follow-up: more proposals for the last rejected position. Idempotent per attempt.</summary>
    public RoundCheck MoreProposals(MoreProposals request)
    {
        if (request.Epoch < Epoch || request.Round < _lastRound)
        {
            return RoundCheck.Stale; // a late duplicate of a finished round or an abandoned epoch
        }

        if (request.Epoch != Epoch || request.Round != _lastRound || _lastVerdict?.Kind != VerdictKind.Proposals || _lastRejectedRow is null)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"no rsr rejection outstanding for round {request.Round}");
        }

        if (request.Attempt < 1 || request.Attempt > 1000 || request.Proposals is < 1 or > MaxProposals)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, "follow-up attempt or proposal count out of range");
        }

        if (_followUps.TryGetValue(request.Attempt, out var cached))
        {
            return RoundCheck.Duplicate(cached);
        }

        var random = new RoundRandom(Open.Seed, _sessionKey, request.Round);
        var (tokens, probs) = SpeculativeVerifier.DrawProposals(_lastRejectedRow, random, _lastRejectedPosition, request.Attempt, request.Proposals);
        var verdict = _lastVerdict with { Attempt = request.Attempt, ProposalTokens = tokens, ProposalProbs = probs };
        _followUps[request.Attempt] = verdict;
        return RoundCheck.Duplicate(verdict);
    }

    public void Dispose() => _sequence.Dispose();
}

/// <summary>Result of checking a request against a session.</summary>
public readonly record struct RoundCheck(RoundCheckKind Kind, Verdict? Verdict, ErrorCode Code, string? Reason)
{
    public static RoundCheck Ok => new(RoundCheckKind.Ok, null, 0, null);

    public static RoundCheck Stale => new(RoundCheckKind.Stale, null, 0, null);

    /// <summary>A conditional round whose condition cannot be judged yet: keep it and check it again later.</summary>
    public static RoundCheck Hold => new(RoundCheckKind.Hold, null, 0, null);

    public static RoundCheck Duplicate(Verdict v) => new(RoundCheckKind.Reply, v, 0, null);

    public static RoundCheck Fail(ErrorCode code, string reason) => new(RoundCheckKind.Error, null, code, reason);

    /// <summary>A resent streamed round: send again what was decoded from <paramref name="from"/> (an index into the stream).</summary>
    public static RoundCheck Resume(int from) => new(RoundCheckKind.Resume, null, 0, null) { StreamFrom = from };

    /// <summary><see cref="RoundCheckKind.Resume"/>: the first token of the stream the device lacks.</summary>
    public int StreamFrom { get; init; }
}

public enum RoundCheckKind
{
    /// <summary>Verify it.</summary>
    Ok,

    /// <summary>Reply with <see cref="RoundCheck.Verdict"/> as is.</summary>
    Reply,

    /// <summary>An older round than the last: drop silently.</summary>
    Stale,

    /// <summary>Refuse with <see cref="RoundCheck.Code"/>.</summary>
    Error,

    /// <summary>A streamed round resent: resend its tokens from <see cref="RoundCheck.StreamFrom"/>; the stream goes on.</summary>
    Resume,

    /// <summary>A conditional round whose round it follows is not verified yet: hold it, check it again after that round.</summary>
    Hold,
}

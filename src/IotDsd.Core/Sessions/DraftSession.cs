using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>
/// The device side of one generation: drafts γ tokens with the small model, keeps Q_i locally, owns the committed
/// text, and applies the verifier's verdicts. No I/O: it builds and consumes wire messages only.
/// </summary>
public sealed partial class DraftSession : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly IModelSequence _sequence;
    private readonly List<int> _committed;
    private readonly ulong _sessionKey;
    private readonly int _vocab;
    private float[] _logits;
    private Outstanding? _outstanding;

    /// <summary>Starts a generation after <paramref name="prompt"/>, which must not be empty.</summary>
    public DraftSession(ILanguageModel draftModel, SessionSettings settings, ReadOnlySpan<int> prompt)
    {
        if (prompt.IsEmpty)
        {
            throw new ArgumentException("the prompt must hold at least one token", nameof(prompt));
        }

        if (settings.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(settings));
        }

        _model = draftModel;
        Settings = settings;
        _vocab = draftModel.VocabSize;
        _sequence = draftModel.CreateSequence();
        _committed = new List<int>(prompt.Length + settings.MaxTokens + 64);
        _committed.AddRange(prompt.ToArray());
        PromptLength = prompt.Length;
        _sessionKey = DeterministicRandom.SessionKey(settings.SessionId);
        _logits = new float[_vocab];
    }

    public SessionSettings Settings { get; }
    public int PromptLength { get; }

    /// <summary>Every committed token, prompt included.</summary>
    public IReadOnlyList<int> Committed => _committed;

    /// <summary>Generated tokens committed so far (may exceed MaxTokens by the last round's overshoot).</summary>
    public int Generated => _committed.Count - PromptLength;

    /// <summary>True once <see cref="SessionSettings.MaxTokens"/> tokens, or an end-of-sequence token, are committed.</summary>
    public bool IsComplete => Generated >= Settings.MaxTokens || StopIndex() >= 0;

    /// <summary>Why the generation ended (meaningful once <see cref="IsComplete"/>).</summary>
    public StopReason StopReason => StopIndex() >= 0 ? StopReason.Eos : StopReason.MaxTokens;

    /// <summary>
    /// Tokens of the output: those generated up to and including the first end-of-sequence token, and never more than
    /// <see cref="SessionSettings.MaxTokens"/> (a round may commit past either; the excess is not output).
    /// </summary>
    public int OutputLength => StopIndex() is var stop and >= 0 ? stop + 1 - PromptLength : Math.Min(Generated, Settings.MaxTokens);

    private int _stopScanned;
    private int _stopIndex = -1;

    /// <summary>Index in <see cref="Committed"/> of the first generated end-of-sequence token within max tokens, or −1.</summary>
    private int StopIndex()
    {
        if (_stopIndex >= 0 || Settings.StopTokens.Count == 0)
        {
            return _stopIndex;
        }

        var end = Math.Min(_committed.Count, PromptLength + Settings.MaxTokens);
        for (var i = Math.Max(_stopScanned, PromptLength); i < end; i++)
        {
            if (Settings.IsStop(_committed[i]))
            {
                _stopIndex = i;
                break;
            }
        }

        _stopScanned = end;
        return _stopIndex;
    }

    /// <summary>The round the next <see cref="PrepareRound"/> builds (or the one outstanding).</summary>
    public long Round { get; private set; } = 1;

    /// <summary>Epoch of the verifier session; bumped by <see cref="ResetVerifier"/>.</summary>
    public int Epoch { get; private set; } = 1;

    /// <summary>Committed tokens the verifier is known to hold.</summary>
    public int VerifierKnown { get; private set; }

    /// <summary>The request in flight, if any (resent verbatim on retry).</summary>
    public object? OutstandingRequest => _outstanding?.Request;

    /// <summary>The verifier lost or never had this session: the next round resends the whole prefix under a new epoch.</summary>
    public void ResetVerifier()
    {
        VerifierKnown = 0;
        Epoch++;
        if (_outstanding is { } o)
        {
            // The round is redone from scratch: forget what its abandoned rsr attempts counted, so the proposal budget
            // (and with it the text) is the same as if the round had never been interrupted.
            ProposalsExamined = o.ExaminedBefore;
            FollowUps = o.FollowUpsBefore;
        }

        _outstanding = null;
        DropAhead();
    }

    /// <summary>
    /// The verifier holds (or last closed) this session id at epoch <paramref name="held"/>, at or above this session's:
    /// an earlier generation under the same id, or this device before a restart without saved state. Reopens above it.
    /// </summary>
    public void Supersede(int held)
    {
        if (held < Epoch || held >= int.MaxValue - 1)
        {
            throw new ProtocolViolationException($"verifier says session {Settings.SessionId} is at epoch {held}, which cannot supersede epoch {Epoch}");
        }

        ResetVerifier();
        Epoch = held + 1;
    }

    /// <summary>The open request for the current epoch.</summary>
    public OpenSession OpenRequest(string deviceId) => new()
    {
        SessionId = Settings.SessionId,
        DeviceId = deviceId,
        Epoch = Epoch,
        Mode = Settings.Mode,
        Sampling = Settings.Sampling.ToWire(),
        Seed = Settings.Seed,
        MaxTokens = Settings.MaxTokens,
        VocabSize = _vocab,
        MaxGamma = Settings.Gamma,
        VocabularyDigest = VocabularyCheck.DigestOf(_model),
        StopTokens = Settings.StopTokens.Count == 0 ? null : [.. Settings.StopTokens],
        MaxTreeNodes = OffersTrees ? Settings.MaxTreeNodes : 0,
    };

    /// <summary>Drafts up to <paramref name="gamma"/> tokens and builds the round request.</summary>
    public DraftRound PrepareRound(int gamma, int proposals)
    {
        _stream = null; // a streamed round left unfinished (the ladder moved after a reopen) is not resumed
        return BuildRound(gamma, proposals);
    }

    /// <summary>
    /// Starts a new round, chain or tree: refuses a complete generation, forgets rounds drafted ahead, and takes back the
    /// counts of an abandoned outstanding round (it is drafted again).
    /// </summary>
    private void BeginRound()
    {
        if (IsComplete)
        {
            throw new InvalidOperationException("the generation is complete");
        }

        DropAhead();
        if (_outstanding is { } abandoned)
        {
            ProposalsExamined = abandoned.ExaminedBefore;
            FollowUps = abandoned.FollowUpsBefore;
        }
    }

    /// <summary>
    /// Brings the draft cache up to the committed prefix, so that <c>_logits</c> is the row after it. A round re-drafted
    /// without a verdict (after ResetVerifier, or a retry with a smaller γ) left its own drafts in the cache: roll back so
    /// at least the last committed token is fed again.
    /// </summary>
    private void CatchUp(ReadOnlySpan<int> committed)
    {
        if (_sequence.Length >= committed.Length)
        {
            _sequence.Truncate(committed.Length - 1);
        }

        _sequence.Feed(committed[_sequence.Length..], _logits);
    }

    /// <summary>A round's request as far as chains and trees share it: who, which round, the prefix and what is pending.</summary>
    private DraftRound Header(ReadOnlySpan<int> committed) => new()
    {
        SessionId = Settings.SessionId,
        Epoch = Epoch,
        Round = Round,
        CommittedLength = committed.Length,
        PrefixDigest = PrefixDigest.Of(committed),
        Pending = committed[VerifierKnown..].ToArray(),
    };

    private DraftRound BuildRound(int gamma, int proposals)
    {
        BeginRound();
        gamma = Math.Clamp(gamma, 0, Math.Min(Settings.Gamma, Settings.MaxTokens - Generated - 1));
        var n = _committed.Count;
        var committed = CollectionsMarshal.AsSpan(_committed);
        var draft = new int[gamma];
        var rows = new float[gamma * _vocab];
        var random = new RoundRandom(Settings.Seed, _sessionKey, Round);
        var rankRows = Settings.Sampling.IsGreedy ? new Dictionary<int, int[]>() : null;
        if (gamma > 0)
        {
            CatchUp(committed); // the last row is Q_1
            for (var i = 0; i < gamma; i++)
            {
                var q = rows.AsSpan(i * _vocab, _vocab);
                Distribution.FromLogits(_logits, Settings.Sampling, q);
                rankRows?.Add(i - 1, TreeDrafter.TopTokens(_logits, TreeDrafter.RankedTokens));
                draft[i] = Settings.Sampling.IsGreedy
                    ? Distribution.ArgMax(q)
                    : Distribution.Sample(q, random.Uniform(RandomStream.Draft, n + i));
                if (i + 1 < gamma)
                {
                    _sequence.Feed([draft[i]], _logits);
                }
            }
        }

        var request = Header(committed) with
        {
            Draft = draft,
            DraftProbs = Settings.Mode is DecodingMode.Dssd or DecodingMode.Rsr ? ProbsOf(draft, rows) : null,
            DraftDistributions = Settings.Mode == DecodingMode.Dsd ? MemoryMarshal.AsBytes(rows.AsSpan()).ToArray() : null,
            Proposals = Settings.Mode == DecodingMode.Rsr ? proposals : 0,
        };
        _outstanding = new Outstanding(request, draft, rows, n, 0, ProposalsExamined, FollowUps) { RankRows = rankRows };
        _fedFor = gamma > 0 ? request : null;
        return request;
    }

    private float[] ProbsOf(int[] draft, float[] rows)
    {
        var probs = new float[draft.Length];
        for (var i = 0; i < draft.Length; i++)
        {
            probs[i] = rows[(i * _vocab) + draft[i]];
        }

        return probs;
    }

    /// <summary>
    /// Applies a verdict. Verdicts for anything but the outstanding round and attempt are ignored. A malformed verdict
    /// throws <see cref="ProtocolViolationException"/> and changes nothing.
    /// </summary>
    public RoundStep Apply(Verdict verdict, int nextProposals = 8)
    {
        var o = _outstanding;
        if (o is null || verdict.SessionId != Settings.SessionId || verdict.Epoch != Epoch || verdict.Round != Round || verdict.Attempt != o.Attempt)
        {
            return RoundStep.Ignored;
        }

        var gamma = o.Draft.Length;
        if (verdict.Accepted < 0 || verdict.Accepted > gamma)
        {
            throw new ProtocolViolationException($"verdict accepts {verdict.Accepted} of {gamma} drafted tokens");
        }

        var k = verdict.Accepted;
        var path = o.Tree is { } tree ? AcceptedPath(tree, verdict, k) : null;
        var position = o.CommittedAt + k;
        var random = new RoundRandom(Settings.Seed, _sessionKey, Round);
        int next;
        switch (verdict.Kind)
        {
            case VerdictKind.Token:
                next = verdict.Token;
                break;
            case VerdictKind.TargetDistribution when Settings.Mode == DecodingMode.Dssd && k < gamma:
                var p = verdict.TargetDistribution is { } bytes && bytes.Length == _vocab * sizeof(float)
                    ? MemoryMarshal.Cast<byte, float>(bytes)
                    : throw new ProtocolViolationException($"target distribution must hold {_vocab} fp32 values");
                if (!IsDistribution(p))
                {
                    throw new ProtocolViolationException("target distribution holds values outside [0, 1] or no mass");
                }

                next = DraftSide.SampleResidual(p, o.Row(k, _vocab), random.Uniform(RandomStream.Residual, position));
                break;
            case VerdictKind.Proposals when Settings.Mode == DecodingMode.Rsr && k < gamma:
                var tokens = verdict.ProposalTokens ?? [];
                var probs = verdict.ProposalProbs ?? [];
                if (tokens.Length == 0 || tokens.Length != probs.Length)
                {
                    throw new ProtocolViolationException("rsr verdict carries no usable proposals");
                }

                for (var i = 0; i < tokens.Length; i++)
                {
                    if ((uint)tokens[i] >= (uint)_vocab || !(probs[i] > 0f && probs[i] <= 1.0001f))
                    {
                        throw new ProtocolViolationException($"rsr proposal {i} ({tokens[i]}, {probs[i]}) is outside the vocabulary or (0, 1]");
                    }
                }

                next = DraftSide.AcceptProposal(tokens, probs, o.Row(k, _vocab), random, position, o.Attempt, out var examined);
                ProposalsExamined += examined;
                if (next < 0)
                {
                    var attempt = o.Attempt + 1;
                    var more = new MoreProposals { SessionId = Settings.SessionId, Epoch = Epoch, Round = Round, Attempt = attempt, Proposals = nextProposals };
                    _outstanding = o with { Request = more, Attempt = attempt };
                    FollowUps++;
                    return RoundStep.NeedMore(more);
                }

                ProposalsAccepted++;
                break;
            default:
                throw new ProtocolViolationException($"verdict kind {verdict.Kind} does not fit mode {Settings.Mode.Name()} with {k} of {gamma} accepted");
        }

        if ((uint)next >= (uint)_vocab)
        {
            throw new ProtocolViolationException($"verdict token {next} is outside the vocabulary of {_vocab}");
        }

        var before = _committed.Count;
        _committed.AddRange(path is null ? o.Draft.AsSpan(0, k) : TokensOf(o.Tree!, path));
        _committed.Add(next);
        VerifierKnown = o.CommittedAt + k;
        TrimDraftCache();

        Rounds++;
        Drafted += gamma;
        AcceptedTotal += k;
        Round++;
        _outstanding = null;
        _stream = null; // a verifier that does not stream answers a streamed round as a γ = 0 round
        return RoundStep.Committed(before, _committed.Count - before) with { Ranks = RanksOf(o, path, k) };
    }

    private static bool IsDistribution(ReadOnlySpan<float> p)
    {
        double sum = 0;
        foreach (var v in p)
        {
            if (!(v >= 0f && v <= 1.0001f))
            {
                return false;
            }

            sum += v;
        }

        return sum > 0;
    }

    /// <summary>Completed rounds.</summary>
    public long Rounds { get; private set; }

    /// <summary>Draft tokens sent for verification.</summary>
    public long Drafted { get; private set; }

    /// <summary>Draft tokens accepted.</summary>
    public long AcceptedTotal { get; private set; }

    /// <summary>rsr: proposals examined and accepted, and follow-up requests sent.</summary>
    public long ProposalsExamined { get; private set; }

    public long ProposalsAccepted { get; private set; }

    public long FollowUps { get; private set; }

    public void Dispose() => _sequence.Dispose();

    private sealed record Outstanding(object Request, int[] Draft, float[] Rows, int CommittedAt, int Attempt, long ExaminedBefore, long FollowUpsBefore)
    {
        /// <summary>The tree sent, for a tree round.</summary>
        public TreeDraft? Tree { get; init; }

        /// <summary>Greedy: the draft's best tokens where it ranked candidates (key: the node before, −1 the root).</summary>
        public IReadOnlyDictionary<int, int[]>? RankRows { get; init; }

        public ReadOnlySpan<float> Row(int i, int vocab) => Rows.AsSpan(i * vocab, vocab);
    }
}

/// <summary>What applying a verdict did.</summary>
public readonly record struct RoundStep(RoundStepKind Kind, int Start, int Count, MoreProposals? FollowUp)
{
    /// <summary>
    /// Committed greedy rounds: for each depth 1..accepted + 1, the rank (0 = the draft's top token) of the committed
    /// token among the draft's logits at that depth (<see cref="TreeDrafter.RankedTokens"/> for any rank from there on),
    /// −1 where the draft did not rank (a leaf); empty when sampling.
    /// For <see cref="RoundObservation.Ranks"/>.
    /// </summary>
    public int[] Ranks { get; init; } = [];

    public static RoundStep Ignored => new(RoundStepKind.Ignored, 0, 0, null);

    public static RoundStep Committed(int start, int count) => new(RoundStepKind.Committed, start, count, null);

    public static RoundStep NeedMore(MoreProposals request) => new(RoundStepKind.NeedMoreProposals, 0, 0, request);

    public static RoundStep Streaming(int start, int count) => new(RoundStepKind.Streaming, start, count, null);
}

public enum RoundStepKind
{
    /// <summary>Not for the outstanding round: dropped.</summary>
    Ignored,

    /// <summary>Tokens were committed: <see cref="RoundStep.Start"/>, <see cref="RoundStep.Count"/>.</summary>
    Committed,

    /// <summary>rsr: every proposal was rejected; send <see cref="RoundStep.FollowUp"/>.</summary>
    NeedMoreProposals,

    /// <summary>A streamed round goes on: <see cref="RoundStep.Count"/> tokens (maybe none) were committed from
    /// <see cref="RoundStep.Start"/>. Its last chunk gives <see cref="Committed"/> instead.</summary>
    Streaming,
}

/// <summary>The peer sent something the protocol does not allow.</summary>
public sealed class ProtocolViolationException(string message) : Exception(message);

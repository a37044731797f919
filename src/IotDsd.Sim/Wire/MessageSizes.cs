using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Wire;

/// <summary>
/// Payload sizes of the real messages, obtained by encoding them with <see cref="WireCodec"/> (never estimated). Messages
/// are built with the scenario's vocabulary, session id length, a typical token id and typical round counters; sizes are
/// computed once per shape and cached, so the simulation loop never encodes.
/// </summary>
public sealed class MessageSizes
{
    private readonly SimMode _mode;
    private readonly int _vocab;
    private readonly int _token;
    private readonly string _session;
    private readonly long _round;
    private readonly int _length;
    private readonly int _prompt;
    private readonly int[] _roundUp;
    private readonly int[] _firstRoundUp;
    private readonly Dictionary<int, int> _proposals = [];

    public MessageSizes(Scenario scenario)
    {
        _mode = scenario.Mode;
        _vocab = scenario.Vocab;
        _token = scenario.TokenId;
        _session = new string('s', scenario.SessionIdLength);
        _round = Math.Max(1, scenario.TokensPerRequest / 3);
        _length = scenario.PromptTokens + (scenario.TokensPerRequest / 2);
        _prompt = scenario.PromptTokens;
        _roundUp = new int[65];
        _firstRoundUp = new int[65];
        Open = WireCodec.Encode(new OpenSession
        {
            SessionId = _session,
            DeviceId = _session,
            Epoch = 1,
            Mode = _mode.Wire(),
            Sampling = new SamplingSettings { Temperature = _mode == SimMode.Greedy ? 0f : 0.7f },
            Seed = 0x9E3779B97F4A7C15UL,
            MaxTokens = scenario.TokensPerRequest,
            VocabSize = _vocab,
            MaxGamma = scenario.Gamma,
        }).Length;
        Opened = WireCodec.Encode(new SessionOpened { SessionId = _session, Epoch = 1, VerifierId = "verifier-1", TargetModel = "target" }).Length;
        TokenVerdict = VerdictOf(k: 2, VerdictKind.Token, 0);
        DssdRejection = VerdictOf(k: 1, VerdictKind.TargetDistribution, 0);
        MoreProposals = WireCodec.Encode(new MoreProposals { SessionId = _session, Epoch = 1, Round = _round, Attempt = 1, Proposals = 4 }).Length;
        StreamedToken = VerdictOf(k: 0, VerdictKind.Token, 0);
    }

    /// <summary>The open request and its reply.</summary>
    public int Open { get; }

    public int Opened { get; }

    /// <summary>A verdict carrying the next token (greedy, dsd, or all drafts accepted).</summary>
    public int TokenVerdict { get; }

    /// <summary>dssd: a rejection carrying the full target row.</summary>
    public int DssdRejection { get; }

    /// <summary>rsr: the request for more proposals.</summary>
    public int MoreProposals { get; }

    /// <summary>Cloud modes: one streamed token, sized as the smallest message carrying a token (a verdict).</summary>
    public int StreamedToken { get; }

    /// <summary>A draft round of <paramref name="gamma"/> tokens; the first round carries the prompt.</summary>
    public int RoundUp(int gamma, bool first)
    {
        var table = first ? _firstRoundUp : _roundUp;
        if (table[gamma] == 0)
        {
            table[gamma] = RoundOf(gamma, first ? _prompt : 1);
        }

        return table[gamma];
    }

    /// <summary>rsr: a rejection carrying <paramref name="m"/> proposals.</summary>
    public int RsrRejection(int m)
    {
        if (!_proposals.TryGetValue(m, out var size))
        {
            size = VerdictOf(k: 1, VerdictKind.Proposals, m);
            _proposals[m] = size;
        }

        return size;
    }

    /// <summary>The downlink verdict of a round in which <paramref name="accepted"/> of <paramref name="gamma"/> drafts were accepted.</summary>
    public int Downlink(int gamma, int accepted, int proposals) =>
        accepted >= gamma ? TokenVerdict : _mode switch
        {
            SimMode.Dssd => DssdRejection,
            SimMode.Rsr => RsrRejection(proposals),
            _ => TokenVerdict,
        };

    private int RoundOf(int gamma, int pending)
    {
        var draft = Enumerable.Repeat(_token, gamma).ToArray();
        return WireCodec.Encode(new DraftRound
        {
            SessionId = _session,
            Epoch = 1,
            Round = _round,
            CommittedLength = _length,
            PrefixDigest = 0xCBF29CE484222325UL,
            Pending = Enumerable.Repeat(_token, pending).ToArray(),
            Draft = draft,
            DraftProbs = _mode is SimMode.Dssd or SimMode.Rsr ? Enumerable.Repeat(0.37f, gamma).ToArray() : null,
            DraftDistributions = _mode == SimMode.Dsd ? new byte[gamma * _vocab * sizeof(float)] : null,
            Proposals = _mode == SimMode.Rsr ? 4 : 0,
        }).Length;
    }

    private int VerdictOf(int k, VerdictKind kind, int proposals) => WireCodec.Encode(new Verdict
    {
        SessionId = _session,
        Epoch = 1,
        Round = _round,
        Accepted = k,
        Kind = kind,
        Token = kind == VerdictKind.Token ? _token : 0,
        TargetDistribution = kind == VerdictKind.TargetDistribution ? new byte[_vocab * sizeof(float)] : null,
        ProposalTokens = kind == VerdictKind.Proposals ? Enumerable.Repeat(_token, proposals).ToArray() : null,
        ProposalProbs = kind == VerdictKind.Proposals ? Enumerable.Repeat(0.21f, proposals).ToArray() : null,
        BatchSize = 1,
        QueueDepth = 0,
        VerifyMicros = 1500,
    }).Length;
}

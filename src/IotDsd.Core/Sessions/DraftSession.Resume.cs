using System.Runtime.InteropServices;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>Surviving faults: resuming from saved state, and draft-only text for while the link is down.</summary>
public sealed partial class DraftSession
{
    /// <summary>
    /// Resumes a generation from a <see cref="Snapshot"/> (a restarted process). The verifier is assumed to know
    /// nothing: the next round reopens under a new epoch and resends the whole committed prefix.
    /// </summary>
    public DraftSession(ILanguageModel draftModel, SessionSettings settings, DraftSessionState state)
        : this(draftModel, settings, PromptOf(state))
    {
        if (state.SessionId != settings.SessionId || state.Committed.Length < state.PromptLength || state.Round < 1 || state.Epoch < 1)
        {
            throw new ArgumentException($"saved state of session '{state.SessionId}' does not fit session '{settings.SessionId}'", nameof(state));
        }

        foreach (var t in state.Committed)
        {
            if ((uint)t >= (uint)_vocab)
            {
                throw new ArgumentException($"saved state holds token {t}, outside the vocabulary of {_vocab}", nameof(state));
            }
        }

        _committed.AddRange(state.Committed.AsSpan(state.PromptLength));
        Round = state.Round;
        Epoch = state.Epoch + 1;
        Rounds = state.Rounds;
        Drafted = state.Drafted;
        AcceptedTotal = state.Accepted;
        ProposalsExamined = state.ProposalsExamined;
        ProposalsAccepted = state.ProposalsAccepted;
        FollowUps = state.FollowUps;
    }

    private static ReadOnlySpan<int> PromptOf(DraftSessionState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.PromptLength >= 1 && state.PromptLength <= state.Committed.Length
            ? state.Committed.AsSpan(0, state.PromptLength)
            : throw new ArgumentException($"saved state of session '{state.SessionId}' has a prompt of {state.PromptLength} tokens in {state.Committed.Length}", nameof(state));
    }

    /// <summary>What must survive a restart: committed tokens, round, epoch and the counters that steer later rounds.</summary>
    public DraftSessionState Snapshot() => new()
    {
        SessionId = Settings.SessionId,
        Committed = [.. _committed],
        PromptLength = PromptLength,
        Round = Round,
        Epoch = Epoch,
        Rounds = Rounds,
        Drafted = Drafted,
        Accepted = AcceptedTotal,
        ProposalsExamined = _outstanding?.ExaminedBefore ?? ProposalsExamined,
        ProposalsAccepted = ProposalsAccepted,
        FollowUps = _outstanding?.FollowUpsBefore ?? FollowUps,
    };

    /// <summary>
    /// Lossy: continues the committed text with the draft model alone, for showing while the link is down. Nothing
    /// is committed; the tokens are drawn with the current round's draft randomness, so the first γ of them are the
    /// draft that round will send.
    /// </summary>
    public int[] DraftOnly(int count)
    {
        count = Math.Clamp(count, 0, Settings.MaxTokens - Generated);
        var result = new int[count];
        if (count == 0)
        {
            return result;
        }

        var n = _committed.Count;
        _fedFor = null;
        if (_sequence.Length >= n)
        {
            _sequence.Truncate(n - 1);
        }

        _sequence.Feed(CollectionsMarshal.AsSpan(_committed)[_sequence.Length..], _logits);
        var random = new RoundRandom(Settings.Seed, _sessionKey, Round);
        var q = new float[_vocab];
        for (var i = 0; i < count; i++)
        {
            Distribution.FromLogits(_logits, Settings.Sampling, q);
            result[i] = Settings.Sampling.IsGreedy ? Distribution.ArgMax(q) : Distribution.Sample(q, random.Uniform(RandomStream.Draft, n + i));
            if (i + 1 < count)
            {
                _sequence.Feed([result[i]], _logits);
            }
        }

        return result;
    }
}

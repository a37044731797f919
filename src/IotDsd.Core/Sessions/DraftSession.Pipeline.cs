using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Sessions;

/// <summary>
/// Pipelined rounds (greedy): while round r is outstanding, the next round is drafted on r's predicted outcome — every
/// draft accepted and the bonus token the draft's own argmax after them — and sent with
/// <see cref="DraftRound.AfterRound"/> = r. It is numbered r + 1, as the sequential round after r would be, and drafted
/// from that predicted prefix exactly as that round would be, so when the prediction comes true it is that round.
/// After r's verdict, <see cref="PromoteAhead"/> makes it the outstanding round, or discards it when the real outcome
/// differs (the verifier answers it <see cref="VerdictKind.ConditionUnmet"/>; the device drafts r + 1 again).
/// Only greedy: a sampled bonus token is the target's, and a prediction of it would almost never hold.
/// </summary>
public sealed partial class DraftSession
{
    private Ahead? _ahead;
    private object? _fedFor; // the outstanding request whose drafts (all but the last) the draft cache holds, _logits after them

    /// <summary>The round drafted ahead on a predicted outcome of the outstanding one, if any.</summary>
    public DraftRound? AheadRequest => _ahead?.Request;

    /// <summary>
    /// Drafts the round after the outstanding one on its predicted outcome and returns it (with
    /// <see cref="DraftRound.AfterRound"/> set), or null when no such round is possible: not greedy, no drafted chain
    /// outstanding, one already ahead, or the predicted outcome would end the generation.
    /// </summary>
    public DraftRound? PrepareAhead(int gamma)
    {
        if (_ahead is not null || !Settings.Sampling.IsGreedy || Settings.Mode != DecodingMode.Greedy
            || _outstanding is not { Request: DraftRound { Stream: 0, TreeParents: null } outstanding, Attempt: 0 } o || o.Draft.Length == 0)
        {
            return null;
        }

        var k = o.Draft.Length;
        var n = o.CommittedAt;
        if (!ReferenceEquals(_fedFor, outstanding) || _sequence.Length != n + k - 1)
        {
            // The cache moved since the round was drafted (a draft-only stretch): bring it to the prefix and drafts.
            if (_sequence.Length >= n)
            {
                _sequence.Truncate(n - 1);
            }

            _sequence.Feed(CollectionsMarshal.AsSpan(_committed)[_sequence.Length..], _logits);
            _sequence.Feed(o.Draft.AsSpan(0, k - 1), _logits);
        }

        _fedFor = null;
        _sequence.Feed(o.Draft.AsSpan(k - 1), _logits);
        var bonus = Distribution.ArgMax(_logits);
        var predicted = new int[n + k + 1];
        CollectionsMarshal.AsSpan(_committed).CopyTo(predicted);
        o.Draft.CopyTo(predicted, n);
        predicted[^1] = bonus;
        var generated = predicted.Length - PromptLength;
        gamma = Math.Max(0, Math.Min(gamma, Math.Min(Settings.Gamma, Settings.MaxTokens - generated - 1)));
        if (gamma == 0 || EndsWithin(predicted.AsSpan(n)))
        {
            return null; // the predicted outcome ends the generation (or leaves nothing to draft): nothing to pipeline
        }

        _sequence.Feed([bonus], _logits);
        var draft = new int[gamma];
        var rows = new float[gamma * _vocab];
        for (var i = 0; i < gamma; i++)
        {
            var q = rows.AsSpan(i * _vocab, _vocab);
            Distribution.FromLogits(_logits, Settings.Sampling, q);
            draft[i] = Distribution.ArgMax(q);
            if (i + 1 < gamma)
            {
                _sequence.Feed([draft[i]], _logits);
            }
        }

        var request = new DraftRound
        {
            SessionId = Settings.SessionId,
            Epoch = Epoch,
            Round = Round + 1,
            CommittedLength = predicted.Length,
            PrefixDigest = PrefixDigest.Of(predicted),
            Pending = [bonus], // every draft of the round before accepted: the verifier holds them, not the bonus
            Draft = draft,
            AfterRound = Round,
        };
        _ahead = new Ahead(request, draft, rows, predicted.Length, predicted.AsSpan(n).ToArray());
        _fedFor = request;
        return request;
    }

    /// <summary>
    /// After the outstanding round's verdict was applied: makes the round drafted ahead the outstanding one when the
    /// real outcome is the predicted one (returns true; its request is already sent), else drops it (false).
    /// </summary>
    public bool PromoteAhead()
    {
        var a = _ahead;
        _ahead = null;
        if (a is null || _outstanding is not null || a.Request.Round != Round || a.Request.Epoch != Epoch || !AheadHeld(a))
        {
            if (a is not null && ReferenceEquals(_fedFor, a.Request))
            {
                _fedFor = null;
            }

            return false;
        }

        _outstanding = new Outstanding(a.Request, a.Draft, a.Rows, a.CommittedAt, 0, ProposalsExamined, FollowUps);
        return true;
    }

    /// <summary>Drops a round drafted ahead (the session moved to a new epoch, or a fresh round is drafted).</summary>
    private void DropAhead()
    {
        _ahead = null;
        _fedFor = null;
    }

    private bool AheadHeld(Ahead a) =>
        _committed.Count == a.CommittedAt && VerifierKnown == a.CommittedAt - 1
        && CollectionsMarshal.AsSpan(_committed)[^a.Predicted.Length..].SequenceEqual(a.Predicted);

    /// <summary>
    /// Called by <see cref="Apply"/> once a verdict is committed: the draft cache keeps only what the verifier holds,
    /// unless a round drafted ahead was built on exactly this outcome (then it holds that prefix and the next drafts).
    /// </summary>
    private void TrimDraftCache()
    {
        if (_ahead is { } a && AheadHeld(a))
        {
            return;
        }

        _fedFor = null;
        if (_sequence.Length > VerifierKnown)
        {
            _sequence.Truncate(VerifierKnown);
        }
    }

    private bool EndsWithin(ReadOnlySpan<int> tokens)
    {
        foreach (var t in tokens)
        {
            if (Settings.IsStop(t))
            {
                return true;
            }
        }

        return false;
    }

    private sealed record Ahead(DraftRound Request, int[] Draft, float[] Rows, int CommittedAt, int[] Predicted);
}

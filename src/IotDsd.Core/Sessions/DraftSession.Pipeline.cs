using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Sessions;

/// <summary>
/// Pipelined rounds (greedy): while round r is outstanding, the next round is drafted on r's predicted outcome — every
/// draft accepted and the bonus token the draft's own argmax after them — and sent with
/// <see cref="DraftRound.AfterRound"/> = r. It is numbered r + 1, as the sequential round after r would be, and drafted
/// from that predicted prefix exactly as that round would be, so when the prediction comes true it is that round.
/// Several outcomes may be predicted (k drafts accepted and the draft's best other token, for small k), each its own
/// round r + 1. After r's verdict, <see cref="PromoteAhead"/> makes the one built on the real outcome the outstanding
/// round and discards the rest (the verifier answers them <see cref="VerdictKind.ConditionUnmet"/>); when none was, the
/// device drafts r + 1 again.
/// Only greedy: a sampled bonus token is the target's, and a prediction of it would almost never hold.
/// </summary>
public sealed partial class DraftSession
{
    private readonly List<Ahead> _ahead = [];
    private object? _fedFor; // the outstanding request whose drafts (all but the last) the draft cache holds, _logits after them

    /// <summary>The rounds drafted ahead on predicted outcomes of the outstanding one (empty when none).</summary>
    public IReadOnlyList<DraftRound> AheadRequests => [.. _ahead.Select(a => a.Request)];

    /// <summary>
    /// Drafts the round after the outstanding one on its predicted outcomes and returns them (each with
    /// <see cref="DraftRound.AfterRound"/> set), or an empty list when no such round is possible: not greedy, no drafted
    /// chain outstanding, rounds already ahead, or every predicted outcome would end the generation. The first
    /// <paramref name="outcomes"/> − 1 predictions are "k drafts accepted, then the draft's best other token" for
    /// k = 0, 1, …; the last is always "every draft accepted, then the draft's own next token". 1 predicts only that.
    /// </summary>
    public IReadOnlyList<DraftRound> PrepareAhead(int gamma, int outcomes = 1)
    {
        if (_ahead.Count > 0 || !Settings.Sampling.IsGreedy || Settings.Mode != DecodingMode.Greedy
            || _outstanding is not { Request: DraftRound { Stream: 0, TreeParents: null } outstanding, Attempt: 0 } o || o.Draft.Length == 0)
        {
            return [];
        }

        var k = o.Draft.Length;
        var n = o.CommittedAt;
        var prefix = new int[n + k];
        CollectionsMarshal.AsSpan(_committed).CopyTo(prefix);
        o.Draft.CopyTo(prefix, n);
        if (!ReferenceEquals(_fedFor, outstanding) || _sequence.Length != n + k - 1)
        {
            // The cache moved since the round was drafted (a draft-only stretch): bring it to the prefix and drafts.
            if (_sequence.Length >= n)
            {
                _sequence.Truncate(n - 1);
            }

            _sequence.Feed(prefix.AsSpan(_sequence.Length, n + k - 1 - _sequence.Length), _logits);
        }

        _fedFor = null;
        var agreed = n + k - 1; // the cache holds prefix[..agreed] (and maybe a prediction's tokens after it)
        for (var accepted = 0; accepted < Math.Min(k, outcomes - 1); accepted++)
        {
            // Draft k rejected at this position: the target's token is most likely the draft's best other one.
            _sequence.Truncate(n + accepted - 1);
            _sequence.Feed(prefix.AsSpan(n + accepted - 1, 1), _logits);
            _logits[o.Draft[accepted]] = float.NegativeInfinity;
            DraftOn(prefix.AsSpan(0, n + accepted), Distribution.ArgMax(_logits), gamma);
            agreed = n + accepted;
        }

        if (_sequence.Length != agreed)
        {
            _sequence.Truncate(agreed);
        }

        if (agreed < n + k - 1)
        {
            _sequence.Feed(prefix.AsSpan(agreed, n + k - 1 - agreed), _logits);
        }

        _sequence.Feed(prefix.AsSpan(n + k - 1, 1), _logits);
        if (DraftOn(prefix, Distribution.ArgMax(_logits), gamma) is { } last)
        {
            _fedFor = last;
        }

        return [.. _ahead.Select(a => a.Request)];
    }

    /// <summary>Drafts the round after <paramref name="prefix"/> + <paramref name="bonus"/> (the cache holds the prefix)
    /// and keeps it ahead; null when that outcome would end the generation.</summary>
    private DraftRound? DraftOn(ReadOnlySpan<int> prefix, int bonus, int gamma)
    {
        var predicted = new int[prefix.Length + 1];
        prefix.CopyTo(predicted);
        predicted[^1] = bonus;
        var n = _outstanding!.CommittedAt;
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
            Pending = [bonus], // the accepted drafts of the round before are the verifier's; the next token is not
            Draft = draft,
            AfterRound = Round,
        };
        _ahead.Add(new Ahead(request, draft, rows, predicted.Length, predicted.AsSpan(n).ToArray()));
        return request;
    }

    /// <summary>
    /// After the outstanding round's verdict was applied: makes the round drafted ahead on the real outcome the
    /// outstanding one and returns it (its request is already sent), dropping the others; null when none was built on it.
    /// </summary>
    public DraftRound? PromoteAhead()
    {
        var held = _outstanding is null ? _ahead.Find(a => a.Request.Round == Round && a.Request.Epoch == Epoch && AheadHeld(a)) : null;
        _ahead.Clear();
        if (held is null)
        {
            _fedFor = null;
            return null;
        }

        if (!ReferenceEquals(_fedFor, held.Request))
        {
            _fedFor = null;
        }

        _outstanding = new Outstanding(held.Request, held.Draft, held.Rows, held.CommittedAt, 0, ProposalsExamined, FollowUps);
        return held.Request;
    }

    /// <summary>Drops the rounds drafted ahead (the session moved to a new epoch, or a fresh round is drafted).</summary>
    private void DropAhead()
    {
        _ahead.Clear();
        _fedFor = null;
    }

    private bool AheadHeld(Ahead a) =>
        _committed.Count == a.CommittedAt && VerifierKnown == a.CommittedAt - 1
        && CollectionsMarshal.AsSpan(_committed)[^a.Predicted.Length..].SequenceEqual(a.Predicted);

    /// <summary>
    /// Called by <see cref="Apply"/> once a verdict is committed: the draft cache keeps only what the verifier holds,
    /// unless the last round drafted ahead (whose prefix and drafts the cache holds) was built on exactly this outcome.
    /// </summary>
    private void TrimDraftCache()
    {
        if (_ahead.Count > 0 && ReferenceEquals(_fedFor, _ahead[^1].Request) && AheadHeld(_ahead[^1]))
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

using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;

namespace IotDsd.Core.Sessions;

/// <summary>
/// Pipelined (conditional) rounds: a round with <see cref="DraftRound.AfterRound"/> = r was drafted on the device's
/// prediction of round r's outcome and sent before r's verdict. The rules, for a conditional round numbered r + 1:
/// <list type="number">
/// <item>It must follow r directly (<c>Round = AfterRound + 1</c>) and carry drafts (no stream); else it is refused.</item>
/// <item>Round r not verified yet (it was reordered behind, or lost): <see cref="RoundCheckKind.Hold"/> — the caller
/// keeps it (one per session) and checks it again once r is verified.</item>
/// <item>Round r is the last verified: the condition is that the round builds on exactly r's real outcome — the
/// verified prefix (length and digest) followed by the one token r's verdict chose, as its only pending token (so
/// only verdicts that choose the token, greedy and dsd, can be followed). Holds: it is verified like any round (and its verdict cached). Fails: a short
/// <see cref="VerdictKind.ConditionUnmet"/> reply, which is never cached and changes nothing, since the device then
/// sends the real round r + 1 under the same number.</item>
/// <item>Round r + 1 already verified (this round, a duplicate, or the real round sent after an unmet condition): the
/// cached verdict only when the content is the one verified (same prefix, drafts, tree and probabilities); otherwise
/// <see cref="VerdictKind.ConditionUnmet"/>, again uncached. Older rounds are stale.</item>
/// </list>
/// Idempotence: every verdict is a function of (prefix, drafts, round number), and a verdict is cached only for the
/// content it verified, so any copy, in any order, gets either that verdict or a ConditionUnmet that commits nothing.
/// </summary>
public sealed partial class VerifierSession
{
    private ulong _lastContent;

    /// <summary>The last round verified (0 before the first).</summary>
    public long LastRound => _lastRound;

    /// <summary>The short reply to a conditional round whose predicted prefix is not the verified one.</summary>
    public Verdict ConditionUnmet(DraftRound round) => new()
    {
        SessionId = Open.SessionId,
        Epoch = Epoch,
        Round = round.Round,
        Kind = VerdictKind.ConditionUnmet,
    };

    /// <summary>Conditional-round rules (see the type's remarks); null when the ordinary checks decide.</summary>
    private RoundCheck? CheckConditional(DraftRound round)
    {
        if (round.AfterRound == 0)
        {
            return null;
        }

        if (round.AfterRound < 1 || round.Round != round.AfterRound + 1 || round.Stream != 0)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"a conditional round must directly follow its round and carry drafts (round {round.Round} after {round.AfterRound})");
        }

        if (round.Round < _lastRound)
        {
            return RoundCheck.Stale;
        }

        if (round.Round == _lastRound && _lastVerdict is not null)
        {
            return ContentOf(round) == _lastContent ? RoundCheck.Duplicate(_lastVerdict) : RoundCheck.Duplicate(ConditionUnmet(round));
        }

        if (round.AfterRound > _lastRound)
        {
            return RoundCheck.Hold;
        }

        // The real outcome of round r is its accepted drafts (Known) and the token its verdict chose: the round must build
        // on exactly that. A verdict that left the token to the device (dssd, rsr), a streamed round (no verdict) or an
        // ended generation gives no outcome to build on.
        if (_lastVerdict is not { Kind: VerdictKind.Token } last || EndedAt is not null
            || round.CommittedLength != Known + 1 || round.Pending is not [var token] || token != last.Token)
        {
            return RoundCheck.Duplicate(ConditionUnmet(round));
        }

        var digest = _digest;
        digest.Append(round.Pending);
        return digest.Value == round.PrefixDigest ? null : RoundCheck.Duplicate(ConditionUnmet(round));
    }

    /// <summary>
    /// A digest of what decides a round's verdict besides its number: prefix, drafts, tree, draft probabilities and
    /// proposal count (dsd rows are the draft model's function of prefix and drafts, so their length stands for them).
    /// </summary>
    internal static ulong ContentOf(DraftRound round)
    {
        var d = PrefixDigest.Empty;
        d.Append([round.CommittedLength, (int)round.PrefixDigest, (int)(round.PrefixDigest >> 32), round.Proposals, round.Draft.Length]);
        d.Append(round.Draft);
        d.Append(round.TreeParents is { } parents ? [parents.Length, .. parents] : [-1]);
        d.Append(round.DraftProbs is { } probs ? MemoryMarshal.Cast<float, int>(probs.AsSpan()) : [-1]);
        d.Append([round.DraftDistributions?.Length ?? -1]);
        return d.Value;
    }
}

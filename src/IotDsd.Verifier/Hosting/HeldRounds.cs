using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Sessions;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// Conditional rounds that arrived before the round they follow was verified (reordered, or that round was lost): per
/// session only those of the highest round number seen (a device may send one per predicted outcome), at most
/// <see cref="MaxPerSession"/>; a lower round, or one past the bound, is dropped and counted as a duplicate (its
/// sender's resend brings it back). Each is checked again, as if it had just arrived, in the pass after the round it
/// follows is verified, or dropped there when its session is gone or reopened.
/// </summary>
internal sealed class HeldRounds
{
    /// <summary>Held rounds per session: one per possible outcome of the largest round (γ ≤ 64), and a copy of each.</summary>
    public const int MaxPerSession = 130;

    private readonly Dictionary<VerifierSession, List<Held>> _held = [];

    public int Count => _held.Count;

    public void Hold(string device, VerifierSession session, DraftRound round, InboundMessage message, VerifierStats stats)
    {
        if (!_held.TryGetValue(session, out var list))
        {
            _held[session] = list = [];
        }

        if (list.Count > 0 && list[0].Round.Round != round.Round)
        {
            if (list[0].Round.Round > round.Round)
            {
                stats.Duplicate();
                return;
            }

            foreach (var _ in list)
            {
                stats.Duplicate();
            }

            list.Clear();
        }

        if (list.Count >= MaxPerSession)
        {
            stats.Duplicate();
            return;
        }

        list.Add(new Held(device, round, message));
    }

    /// <summary>Moves every held round whose condition can now be judged (or whose session is gone) to <paramref name="ready"/>.</summary>
    public void Release(SessionTable sessions, List<InboundMessage> ready)
    {
        if (_held.Count == 0)
        {
            return;
        }

        foreach (var (session, list) in _held.ToArray())
        {
            if (list.Count == 0 || session.LastRound >= list[0].Round.AfterRound || !ReferenceEquals(sessions.Find(list[0].Device, session.Open.SessionId), session))
            {
                _held.Remove(session);
                ready.AddRange(list.Select(h => h.Message));
            }
        }
    }

    private sealed record Held(string Device, DraftRound Round, InboundMessage Message);
}

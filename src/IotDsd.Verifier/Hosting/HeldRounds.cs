using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Sessions;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// Conditional rounds that arrived before the round they follow was verified (reordered, or that round was lost): at
/// most one per session, the highest round kept (a copy of the same round replaces the older copy; the one dropped is
/// counted as a duplicate, and its sender's resend brings it back). Each is checked again, as if it had just arrived,
/// in the pass after the round it follows is verified, or dropped there when its session is gone or reopened.
/// </summary>
internal sealed class HeldRounds
{
    private readonly Dictionary<VerifierSession, Held> _held = [];

    public int Count => _held.Count;

    public void Hold(string device, VerifierSession session, DraftRound round, InboundMessage message, VerifierStats stats)
    {
        if (_held.TryGetValue(session, out var before) && before.Round.Round > round.Round)
        {
            stats.Duplicate();
            return;
        }

        if (before is not null)
        {
            stats.Duplicate();
        }

        _held[session] = new Held(device, round, message);
    }

    /// <summary>Moves every held round whose condition can now be judged (or whose session is gone) to <paramref name="ready"/>.</summary>
    public void Release(SessionTable sessions, List<InboundMessage> ready)
    {
        if (_held.Count == 0)
        {
            return;
        }

        foreach (var (session, held) in _held.ToArray())
        {
            if (session.LastRound >= held.Round.AfterRound || !ReferenceEquals(sessions.Find(held.Device, session.Open.SessionId), session))
            {
                _held.Remove(session);
                ready.Add(held.Message);
            }
        }
    }

    private sealed record Held(string Device, DraftRound Round, InboundMessage Message);
}

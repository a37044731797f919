using IotDsd.Core.Sessions;

namespace IotDsd.Verifier.Sessions;

/// <summary>The sessions a verifier holds, keyed by (device, session) so no device can reach another's state.</summary>
public sealed class SessionTable : IDisposable
{
    private const int RememberedExpiries = 4096;
    private readonly Dictionary<(string Device, string Session), VerifierSession> _sessions = [];
    private readonly HashSet<(string Device, string Session)> _expired = [];
    private readonly Queue<(string Device, string Session)> _expiredOrder = new();

    public int Count => _sessions.Count;

    public VerifierSession? Find(string deviceId, string sessionId) =>
        _sessions.TryGetValue((deviceId, sessionId), out var s) ? s : null;

    /// <summary>True if the session was dropped for idleness (remembered for the last few thousand), so a late
    /// round can be told why it is unknown.</summary>
    public bool WasExpired(string deviceId, string sessionId) => _expired.Contains((deviceId, sessionId));

    public void Put(string deviceId, VerifierSession session)
    {
        var key = (deviceId, session.Open.SessionId);
        if (_sessions.Remove(key, out var old))
        {
            old.Dispose();
        }

        _sessions[key] = session;
    }

    public bool Remove(string deviceId, string sessionId)
    {
        if (_sessions.Remove((deviceId, sessionId), out var s))
        {
            s.Dispose();
            return true;
        }

        return false;
    }

    public int CountForDevice(string deviceId) => _sessions.Keys.Count(k => k.Device == deviceId);

    /// <summary>Drops sessions last used before <paramref name="cutoffTicks"/>; returns how many.</summary>
    public int Expire(long cutoffTicks)
    {
        var stale = _sessions.Where(kv => kv.Value.LastUsedTicks < cutoffTicks).Select(kv => kv.Key).ToList();
        foreach (var key in stale)
        {
            Remove(key.Device, key.Session);
            if (_expired.Add(key))
            {
                _expiredOrder.Enqueue(key);
                if (_expiredOrder.Count > RememberedExpiries)
                {
                    _expired.Remove(_expiredOrder.Dequeue());
                }
            }
        }

        return stale.Count;
    }

    public void Dispose()
    {
        foreach (var s in _sessions.Values)
        {
            s.Dispose();
        }

        _sessions.Clear();
    }
}

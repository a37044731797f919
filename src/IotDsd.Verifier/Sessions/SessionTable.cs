using IotDsd.Core.Sessions;

namespace IotDsd.Verifier.Sessions;

/// <summary>The sessions a verifier holds, keyed by (device, session) so no device can reach another's state.</summary>
public sealed class SessionTable : IDisposable
{
    private const int RememberedEnds = 4096;
    private readonly Dictionary<(string Device, string Session), VerifierSession> _sessions = [];
    private readonly Dictionary<(string Device, string Session), (int Epoch, bool Expired)> _ended = [];
    private readonly Queue<(string Device, string Session)> _endedOrder = new();

    public int Count => _sessions.Count;

    /// <summary>The global KV budget (admission and eviction), when the verifier keeps one.</summary>
    public KvBudget? Budget { get; set; }

    /// <summary>Every live session with its device.</summary>
    public IEnumerable<(string Device, VerifierSession Session)> All => _sessions.Select(kv => (kv.Key.Device, kv.Value));

    /// <summary>Drops a session to free its cache; a late round is told it expired.</summary>
    public bool Evict(string deviceId, string sessionId) => Remove((deviceId, sessionId), expired: true);

    public VerifierSession? Find(string deviceId, string sessionId) =>
        _sessions.TryGetValue((deviceId, sessionId), out var s) ? s : null;

    /// <summary>True if the session was dropped for idleness (remembered for the last few thousand), so a late
    /// round can be told why it is unknown.</summary>
    public bool WasExpired(string deviceId, string sessionId) => _ended.TryGetValue((deviceId, sessionId), out var e) && e.Expired;

    /// <summary>
    /// The epoch at which the session last ended here (closed, expired or dropped), remembered for the last few
    /// thousand: an open at or below it is a late duplicate, or a device reusing the id that must reopen above it.
    /// </summary>
    public int? EndedEpoch(string deviceId, string sessionId) => _ended.TryGetValue((deviceId, sessionId), out var e) ? e.Epoch : null;

    public void Put(string deviceId, VerifierSession session)
    {
        var key = (deviceId, session.Open.SessionId);
        if (_sessions.Remove(key, out var old))
        {
            old.Dispose();
        }

        _sessions[key] = session;
    }

    /// <summary>Drops the session and remembers the epoch it ended at.</summary>
    public bool Remove(string deviceId, string sessionId) => Remove((deviceId, sessionId), expired: false);

    private bool Remove((string Device, string Session) key, bool expired)
    {
        if (!_sessions.Remove(key, out var s))
        {
            return false;
        }

        s.Dispose();
        if (!_ended.ContainsKey(key))
        {
            _endedOrder.Enqueue(key);
            if (_endedOrder.Count > RememberedEnds)
            {
                _ended.Remove(_endedOrder.Dequeue());
            }
        }

        _ended[key] = (s.Epoch, expired);
        return true;
    }

    public int CountForDevice(string deviceId) => _sessions.Keys.Count(k => k.Device == deviceId);

    /// <summary>Drops sessions last used before <paramref name="cutoffTicks"/>; returns how many.</summary>
    public int Expire(long cutoffTicks)
    {
        var stale = _sessions.Where(kv => kv.Value.LastUsedTicks < cutoffTicks).Select(kv => kv.Key).ToList();
        foreach (var key in stale)
        {
            Remove(key, expired: true);
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

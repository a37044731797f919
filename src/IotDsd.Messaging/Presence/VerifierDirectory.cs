using IotDsd.Contracts.Topics;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Presence;

/// <summary>
/// The live verifiers and their loads, as their retained status topics list them. A new session goes to the
/// least-loaded live verifier (<see cref="SessionPlacement"/>: near-equal ones are told apart by weighted rendezvous
/// hashing); the caller keeps it there, where its cache is, while that verifier is online.
/// <para>
/// Only a well-formed <c>offline</c> status of the verifier the topic names, or an empty retained message (a cleared
/// status), takes a verifier out. Anything else on a status topic (<see cref="PresenceCheck"/>: bytes that are not a
/// status, another role's or another id's status, an unknown state, an oversized payload) is counted by reason in
/// <see cref="Rejects"/>, logged without its payload, and the verifier's last good status stands.
/// </para>
/// </summary>
public sealed class VerifierDirectory(ILogger? logger = null, TimeProvider? time = null)
{
    private readonly Dictionary<string, PresencePayload> _verifiers = [];
    private readonly Lock _lock = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Raised (on the receiving thread, outside the lock) with the id of a verifier that was online and no longer is.</summary>
    public event Action<string>? WentOffline;

    /// <summary>Statuses that were not taken, by reason.</summary>
    public PresenceRejects Rejects { get; } = new(logger, time);

    /// <summary>Applies a status message whose payload is all there (or empty); returns false if the topic is not a verifier status.</summary>
    public bool Update(string topic, byte[]? payload) => Update(topic, payload, payload?.Length ?? 0);

    /// <summary>
    /// Applies a status message of <paramref name="length"/> bytes (<paramref name="payload"/> may be null when it was
    /// too large to keep); returns false if the topic is not a verifier status.
    /// </summary>
    public bool Update(string topic, byte[]? payload, int length)
    {
        var id = TopicScheme.VerifierFromStatusTopic(topic);
        if (id is null)
        {
            return false;
        }

        var reading = PresenceCheck.Read("verifier", id, payload, length);
        if (reading.Kind == PresenceKind.Rejected)
        {
            Rejects.Add(topic, reading.Reason!, length);
            return true;
        }

        TaskCompletionSource changed;
        var left = false;
        lock (_lock)
        {
            if (reading.Kind == PresenceKind.Online)
            {
                _verifiers[id] = reading.Status!;
            }
            else
            {
                left = _verifiers.Remove(id);
            }

            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
        if (left)
        {
            WentOffline?.Invoke(id);
        }

        return true;
    }

    /// <summary>Ids of the verifiers now online.</summary>
    public IReadOnlyList<string> Online
    {
        get
        {
            lock (_lock)
            {
                return [.. _verifiers.Keys.Order(StringComparer.Ordinal)];
            }
        }
    }

    private int _settled;

    /// <summary>
    /// Once per directory: after the first status arrives, waits until none has arrived for <paramref name="quiet"/>
    /// (at most <paramref name="max"/>), so the burst of retained statuses a new subscription brings is all in before
    /// the first session is assigned. Otherwise every session of a freshly started device would land on whichever
    /// verifier's status happened to arrive first.
    /// </summary>
    public async Task SettleAsync(TimeSpan quiet, TimeSpan max, TimeProvider time, CancellationToken ct)
    {
        if (Interlocked.Exchange(ref _settled, 1) != 0)
        {
            return;
        }

        var deadline = time.GetTimestamp() + (long)(max.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        while (time.GetTimestamp() < deadline)
        {
            Task changed;
            lock (_lock)
            {
                changed = _changed.Task;
            }

            try
            {
                await changed.WaitAsync(quiet, time, ct).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return;
            }
        }
    }

    /// <summary>True while <paramref name="verifierId"/> has a live retained status.</summary>
    public bool IsOnline(string verifierId)
    {
        lock (_lock)
        {
            return _verifiers.ContainsKey(verifierId);
        }
    }

    /// <summary>
    /// The verifier for a new (or failing-over) session among those online, leaving out <paramref name="exclude"/>
    /// (verifiers that refused it) and, while another is open, those that say they are full; null if none is left.
    /// </summary>
    public string? Pick(string sessionKey, IReadOnlySet<string>? exclude = null)
    {
        List<(string, double)> open = [], full = [];
        lock (_lock)
        {
            foreach (var (id, status) in _verifiers)
            {
                if (exclude?.Contains(id) != true)
                {
                    (status.Load is { Full: true } ? full : open).Add((id, status.Load?.Rank ?? 0));
                }
            }
        }

        return SessionPlacement.Choose(open.Count > 0 ? open : full, sessionKey);
    }

    /// <summary>Rendezvous weight of a (verifier, session) pair: FNV-1a over both, then a SplitMix64 finaliser.</summary>
    public static ulong Score(string verifierId, string sessionKey)
    {
        var h = 14695981039346656037UL;
        foreach (var c in verifierId + "\n" + sessionKey)
        {
            h ^= c;
            h *= 1099511628211UL;
        }

        h += 0x9E3779B97F4A7C15UL;
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
        return h ^ (h >> 31);
    }

    /// <summary>Waits until some verifier (not in <paramref name="exclude"/>) is online or the timeout passes; returns the pick or null.</summary>
    public async Task<string?> WaitForAsync(string sessionKey, TimeSpan timeout, TimeProvider time, CancellationToken ct, IReadOnlySet<string>? exclude = null)
    {
        var deadline = time.GetTimestamp() + (long)(timeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                changed = _changed.Task;
            }

            if (Pick(sessionKey, exclude) is { } id)
            {
                return id;
            }

            var left = TimeSpan.FromSeconds((double)(deadline - time.GetTimestamp()) / System.Diagnostics.Stopwatch.Frequency);
            if (left <= TimeSpan.Zero)
            {
                return null;
            }

            try
            {
                await changed.WaitAsync(left, time, ct).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return null;
            }
        }
    }
}

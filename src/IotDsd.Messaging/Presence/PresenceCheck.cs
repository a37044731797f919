using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Presence;

/// <summary>What a message on a status topic says about its peer.</summary>
public enum PresenceKind
{
    /// <summary>A well-formed <c>online</c> status of the peer the topic names.</summary>
    Online,

    /// <summary>A well-formed <c>offline</c> status (a last will, or a clean stop) of the peer the topic names.</summary>
    Offline,

    /// <summary>An empty payload: the retained status was cleared on purpose.</summary>
    Cleared,

    /// <summary>Anything else: it says nothing about the peer, whose last good status stands.</summary>
    Rejected,
}

/// <summary>The reading of one status message; <see cref="Reason"/> is set when it was rejected.</summary>
public readonly record struct PresenceReading(PresenceKind Kind, PresencePayload? Status, string? Reason);

/// <summary>
/// Reads a retained status the way every consumer must: anyone the broker lets publish on a status topic can put
/// bytes there, so only a well-formed status of the role and id the topic names counts. Rejections carry a short
/// snake_case reason: <c>too_large</c> (over <see cref="MaxBytes"/>), <c>malformed</c> (not a JSON status object),
/// <c>unknown_state</c> (neither online nor offline), <c>wrong_role</c>, <c>id_mismatch</c> (the id in the payload is
/// not the topic's).
/// </summary>
public static class PresenceCheck
{
    /// <summary>Largest status accepted; real ones are a few hundred bytes.</summary>
    public const int MaxBytes = 4096;

    /// <summary>Reads <paramref name="payload"/> (<paramref name="length"/> bytes on the wire; the payload may be
    /// withheld when too large) as the status of <paramref name="role"/> <paramref name="id"/>.</summary>
    public static PresenceReading Read(string role, string id, byte[]? payload, int length)
    {
        if (length == 0 && payload is not { Length: > 0 })
        {
            return new(PresenceKind.Cleared, null, null);
        }

        if (length > MaxBytes || payload is null || payload.Length > MaxBytes)
        {
            return Reject("too_large");
        }

        PresencePayload? status;
        try
        {
            status = JsonSerializer.Deserialize<PresencePayload>(payload);
        }
        catch (JsonException)
        {
            return Reject("malformed");
        }

        if (status is null)
        {
            return Reject("malformed");
        }

        if (status.Role != role)
        {
            return Reject("wrong_role");
        }

        if (status.Id != id)
        {
            return Reject("id_mismatch");
        }

        return status.State switch
        {
            "online" => new(PresenceKind.Online, status, null),
            "offline" => new(PresenceKind.Offline, status, null),
            _ => Reject("unknown_state"),
        };
    }

    private static PresenceReading Reject(string reason) => new(PresenceKind.Rejected, null, reason);
}

/// <summary>
/// Counts rejected statuses by reason and logs them without their payload: at most once a minute per topic (the
/// first at once), with how many were not logged in between. Thread-safe.
/// </summary>
public sealed partial class PresenceRejects(ILogger? logger, TimeProvider? time = null)
{
    private const int MaxTopicsRemembered = 1024;
    private static readonly TimeSpan LogEvery = TimeSpan.FromMinutes(1);
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long LoggedAt, int Unlogged)> _lastLogged = new(StringComparer.Ordinal);

    /// <summary>Raised with the reason of every rejected status (metrics count it).</summary>
    public event Action<string>? Rejected;

    /// <summary>Rejected statuses so far, by reason.</summary>
    public IReadOnlyDictionary<string, long> Counts => new Dictionary<string, long>(_counts, StringComparer.Ordinal);

    /// <summary>All rejected statuses so far.</summary>
    public long Total => _counts.Values.Sum();

    /// <summary>Counts and (rate-limited) logs one rejected status on <paramref name="topic"/>.</summary>
    public void Add(string topic, string reason, int length)
    {
        _counts.AddOrUpdate(reason, 1, (_, n) => n + 1);
        var log = false;
        var unlogged = 0;
        lock (_lastLogged)
        {
            var now = _time.GetTimestamp();
            if (_lastLogged.TryGetValue(topic, out var last) && _time.GetElapsedTime(last.LoggedAt, now) < LogEvery)
            {
                _lastLogged[topic] = last with { Unlogged = last.Unlogged + 1 };
            }
            else
            {
                if (_lastLogged.Count >= MaxTopicsRemembered)
                {
                    _lastLogged.Clear(); // a flood over many topics: forget, and log each once more at most
                }

                unlogged = last.Unlogged;
                _lastLogged[topic] = (Math.Max(1, now), 0);
                log = true;
            }
        }

        if (log && logger is not null)
        {
            Log.Ignored(logger, topic, reason, length, unlogged);
        }

        Rejected?.Invoke(reason);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 435, Level = LogLevel.Warning, Message = "Ignored a status on {Topic}: {Reason} ({Length} bytes; {Unlogged} more ignored there since the last such warning); the last good status stands")]
        public static partial void Ignored(ILogger logger, string topic, string reason, int length, int unlogged);
    }
}


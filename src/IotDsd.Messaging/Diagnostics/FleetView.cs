using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Presence;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>One device or verifier as the fleet view last saw it.</summary>
public sealed record FleetRow
{
    public required string Role { get; init; }
    public required string Id { get; init; }

    /// <summary><c>online</c>, <c>offline</c>, or <c>unknown</c> when only metrics were seen.</summary>
    public string State { get; init; } = "unknown";
    public long Connection { get; init; }

    /// <summary>Process starts, where the status carries them (a persisted presence sequence).</summary>
    public long? Boot { get; init; }
    public string? Version { get; init; }
    public string? Model { get; init; }
    public MetricsPayload? Metrics { get; init; }
}

/// <summary>
/// The fleet as seen through the retained status and metrics topics: feed it every message on
/// <see cref="TopicScheme.FleetFilters"/> and read the rows. Thread-safe.
/// <para>
/// A status counts only when it is a well-formed status of the role and id its topic names (<see cref="PresenceCheck"/>);
/// only such an <c>offline</c> status marks a row offline, and only an empty retained message (a cleared status)
/// removes it. Anything else is counted by reason in <see cref="Rejects"/>, logged without its payload, and the row
/// keeps its last good status.
/// </para>
/// </summary>
public sealed class FleetView(ILogger? logger = null)
{
    private readonly Dictionary<(string Role, string Id), FleetRow> _rows = [];

    /// <summary>Statuses that were not taken, by reason.</summary>
    public PresenceRejects Rejects { get; } = new(logger);

    /// <summary>Messages seen so far (retained ones included).</summary>
    public int Messages { get; private set; }

    /// <summary>Applies one status or metrics message whose payload is all there; returns false if the topic or payload is not one.</summary>
    public bool Apply(string topic, byte[]? payload) => Apply(topic, payload, payload?.Length ?? 0);

    /// <summary>Applies one status or metrics message of <paramref name="length"/> bytes (<paramref name="payload"/> may be
    /// null when it was too large to keep); returns false if the topic or payload is not one.</summary>
    public bool Apply(string topic, byte[]? payload, int length)
    {
        if (Parse(topic) is not { } key)
        {
            return false;
        }

        lock (_rows)
        {
            Messages++;
            var row = _rows.TryGetValue((key.Role, key.Id), out var existing) ? existing : new FleetRow { Role = key.Role, Id = key.Id };
            if (key.Leaf == "status")
            {
                var reading = PresenceCheck.Read(key.Role, key.Id, payload, length);
                if (reading.Kind == PresenceKind.Cleared)
                {
                    // A cleared retained status: the entry was removed on purpose.
                    _rows.Remove((key.Role, key.Id));
                    return true;
                }

                if (reading.Kind == PresenceKind.Rejected)
                {
                    Rejects.Add(topic, reading.Reason!, length);
                    return false;
                }

                var status = reading.Status!;

                row = row with { State = status.State, Connection = status.Connection, Boot = status.Boot, Version = status.Version, Model = status.Model ?? row.Model };
            }
            else
            {
                if (MetricsPayload.TryParse(payload) is not { } metrics)
                {
                    return false;
                }

                row = row with { Metrics = metrics, Version = row.Version ?? metrics.Version, Model = row.Model ?? metrics.Model };
            }

            _rows[(key.Role, key.Id)] = row;
            return true;
        }
    }

    /// <summary>Rows ordered verifiers first, then devices, each by id.</summary>
    public IReadOnlyList<FleetRow> Rows()
    {
        lock (_rows)
        {
            return [.. _rows.Values.OrderBy(r => r.Role == "verifier" ? 0 : 1).ThenBy(r => r.Id, StringComparer.Ordinal)];
        }
    }

    private static (string Role, string Id, string Leaf)? Parse(string topic)
    {
        var parts = topic.Split('/');
        if (parts.Length != 5 || $"{parts[0]}/{parts[1]}" != TopicScheme.Root || !TopicScheme.IsValidId(parts[3]))
        {
            return null;
        }

        var role = parts[2] switch { "devices" => "device", "verifiers" => "verifier", _ => null };
        return role is not null && parts[4] is "status" or "metrics" ? (role, parts[3], parts[4]) : null;
    }
}

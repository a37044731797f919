namespace IotDsd.Contracts.Topics;

/// <summary>
/// The topic tree (docs/protocol.md §8). Every level that names a device or verifier is that client's own identity, so
/// broker ACL patterns (<c>%c</c>, <c>%u</c>) can confine a device to its own topics.
/// </summary>
public static class TopicScheme
{
    /// <summary>Root of every topic.</summary>
    public const string Root = "iotdsd/v1";

    /// <summary>Longest identifier accepted in a topic level.</summary>
    public const int MaxIdLength = 64;

    /// <summary>Retained device presence: birth <c>online</c>, last will <c>offline</c>.</summary>
    public static string DeviceStatus(string deviceId) => $"{Root}/devices/{deviceId}/status";

    /// <summary>Verifier → device replies; the device subscribes once.</summary>
    public static string DeviceReplies(string deviceId) => $"{Root}/devices/{deviceId}/replies";

    /// <summary>Retained verifier presence.</summary>
    public static string VerifierStatus(string verifierId) => $"{Root}/verifiers/{verifierId}/status";

    /// <summary>Filter for every verifier's presence.</summary>
    public const string AllVerifierStatus = Root + "/verifiers/+/status";

    /// <summary>Device → the verifier that holds its session.</summary>
    public static string VerifierRounds(string verifierId, string deviceId) => $"{Root}/verifiers/{verifierId}/rounds/{deviceId}";

    /// <summary>Filter a verifier subscribes to for all of its devices' requests.</summary>
    public static string VerifierRoundsFilter(string verifierId) => $"{Root}/verifiers/{verifierId}/rounds/+";

    /// <summary>Device → a server-only baseline server: <see cref="Messages.StreamRequest"/>s.</summary>
    public static string ServerStreams(string serverId, string deviceId) => $"{Root}/servers/{serverId}/streams/{deviceId}";

    /// <summary>Filter a baseline server subscribes to for all of its devices' requests.</summary>
    public static string ServerStreamsFilter(string serverId) => $"{Root}/servers/{serverId}/streams/+";

    /// <summary>Extracts the device id from a streams topic of <paramref name="serverId"/>; null if the topic is not one.</summary>
    public static string? DeviceFromStreamsTopic(string topic, string serverId) => DeviceAfter(topic, $"{Root}/servers/{serverId}/streams/");

    /// <summary>Extracts the device id from a rounds topic of <paramref name="verifierId"/>; null if the topic is not one.</summary>
    public static string? DeviceFromRoundsTopic(string topic, string verifierId)
    {
        return DeviceAfter(topic, $"{Root}/verifiers/{verifierId}/rounds/");
    }

    private static string? DeviceAfter(string topic, string prefix)
    {
        if (!topic.StartsWith(prefix, StringComparison.Ordinal))
        {
            return null;
        }

        var id = topic[prefix.Length..];
        return IsValidId(id) ? id : null;
    }

    /// <summary>Extracts the verifier id from a verifier status topic; null if the topic is not one.</summary>
    public static string? VerifierFromStatusTopic(string topic)
    {
        var prefix = $"{Root}/verifiers/";
        const string suffix = "/status";
        // The length check keeps the prefix's last '/' and the suffix's first '/' from being the same character
        // ("iotdsd/v1/verifiers/status"), which would make the slice below run backwards.
        if (topic.Length <= prefix.Length + suffix.Length
            || !topic.StartsWith(prefix, StringComparison.Ordinal) || !topic.EndsWith(suffix, StringComparison.Ordinal))
        {
            return null;
        }

        var id = topic[prefix.Length..^suffix.Length];
        return IsValidId(id) ? id : null;
    }

    /// <summary>Periodic retained metrics of a device (field diagnostics).</summary>
    public static string DeviceMetrics(string deviceId) => $"{Root}/devices/{deviceId}/metrics";

    /// <summary>Diagnostic commands to a device (MQTT 5 request/reply).</summary>
    public static string DeviceCommands(string deviceId) => $"{Root}/devices/{deviceId}/cmd";

    /// <summary>Periodic retained metrics of a verifier.</summary>
    public static string VerifierMetrics(string verifierId) => $"{Root}/verifiers/{verifierId}/metrics";

    /// <summary>Diagnostic commands to a verifier.</summary>
    public static string VerifierCommands(string verifierId) => $"{Root}/verifiers/{verifierId}/cmd";

    /// <summary>Filters a fleet view subscribes to: every status and metrics topic.</summary>
    public static readonly string[] FleetFilters =
        [$"{Root}/devices/+/status", $"{Root}/devices/+/metrics", $"{Root}/verifiers/+/status", $"{Root}/verifiers/+/metrics"];

    /// <summary>Where a diagnostic client with MQTT client id <paramref name="clientId"/> takes its replies.</summary>
    public static string DiagnosticReplies(string clientId) => $"{Root}/diag/{clientId}/replies";

    /// <summary>Identifiers are 1–64 characters of <c>[A-Za-z0-9_.-]</c>: no wildcards, no separators.</summary>
    public static bool IsValidId(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxIdLength)
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
            {
                return false;
            }
        }

        return true;
    }
}

using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Load;

/// <summary>
/// Removes the retained presence and metrics that a measurement's own short-lived devices and verifiers leave on a
/// broker it does not own (<c>--broker</c>): otherwise they linger as offline rows in <c>iotdsd diag</c> and in every
/// device's verifier discovery. An empty retained publish deletes a retained message; one on a topic that holds
/// none changes nothing.
/// </summary>
internal static class RetainedCleanup
{
    /// <summary>The status and metrics topics of the given devices and verifiers.</summary>
    public static IReadOnlyList<string> Topics(IEnumerable<string> deviceIds, IEnumerable<string> verifierIds) =>
    [
        .. deviceIds.SelectMany(d => new[] { TopicScheme.DeviceStatus(d), TopicScheme.DeviceMetrics(d) }),
        .. verifierIds.SelectMany(v => new[] { TopicScheme.VerifierStatus(v), TopicScheme.VerifierMetrics(v) }),
    ];

    /// <summary>
    /// Clears <paramref name="topics"/>; a broker that refuses (an ACL) or cannot be reached is reported on stderr, not
    /// thrown: the measurement itself has already succeeded.
    /// </summary>
    public static async Task ClearAsync(BrokerAddress broker, string? username, string? password, IReadOnlyList<string> topics, CancellationToken ct)
    {
        try
        {
            var settings = new MqttSettings { Broker = broker, ClientId = $"iotdsd-cleanup-{Environment.ProcessId}", Username = username, Password = password };
            await using var connection = new MqttConnection(settings, _ => false, NullLogger.Instance);
            await connection.ConnectAsync([], ct).ConfigureAwait(false);
            foreach (var topic in topics)
            {
                await connection.PublishRawAsync(topic, [], retain: true, ct).ConfigureAwait(false);
            }

            await Console.Error.WriteLineAsync($"removed the retained status and metrics of this run's {topics.Count / 2} devices and verifiers from {broker}").ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"could not remove this run's retained status messages from {broker}: {ex.GetBaseException().Message}").ConfigureAwait(false);
        }
    }
}

using System.Text.Json;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Measurements against a broker they do not own leave nothing retained behind: after <c>iotdsd bench rtt --broker</c>
/// on a real Mosquitto, <c>iotdsd diag</c> shows only what was there before (a control device's retained status).
/// </summary>
public sealed class BenchCleanupTests
{
    [SkippableFact]
    public async Task BenchRtt_ExternalBroker_LeavesNoRetainedStatus()
    {
        await using var broker = await MosquittoProcess.TryStart();
        var address = new BrokerAddress("127.0.0.1", broker.Port);

        // A control: a retained device status that is not the bench's must survive and be seen.
        await using (var control = new MqttConnection(new MqttSettings { Broker = address, ClientId = "control" }, _ => false, NullLogger.Instance))
        {
            await control.ConnectAsync([], CancellationToken.None);
            await control.PublishRawAsync(TopicScheme.DeviceStatus("control-device"), new PresencePayload { Role = "device", Id = "control-device", Connection = 1 }.ToJson(), retain: true, CancellationToken.None);
        }

        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "bench", "rtt", "--broker", $"{address}", "--count", "10");
        Assert.True(code == 0, stderr);
        Assert.Contains("greedy round", stdout, StringComparison.Ordinal);
        Assert.Contains("removed the retained status and metrics of this run's 2 devices and verifiers", stderr, StringComparison.Ordinal);

        var diag = await CliProcess.RunAsync(null, "diag", "--broker", $"{address}", "--json", "--wait-ms", "1000");
        Assert.True(diag.Code == 0, diag.Err);
        var ids = JsonDocument.Parse(diag.Out).RootElement.EnumerateArray().Select(r => r.GetProperty("id").GetString()).ToList();
        Assert.Equal(["control-device"], ids);
    }
}

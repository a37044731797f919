using System.Diagnostics;
using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Field diagnostics over a real broker: the retained metrics of a device and a verifier after real generations,
/// and the ping, config (secrets redacted) and rebirth commands as MQTT 5 request/reply. Runs on the in-process
/// broker here and on a Mosquitto container in <see cref="TestcontainersTests"/>.
/// </summary>
public sealed class DiagnosticsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Diagnostics_EmbeddedBroker_MetricsAndCommandsAnswered()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await RunScenarioAsync(broker.Port, output);
    }

    [Fact]
    public void FleetView_BadTopicsAndPayloads_Ignored()
    {
        var view = new FleetView();
        Assert.False(view.Apply("iotdsd/v1/devices/a+b/metrics", new MetricsPayload { Role = "device", Id = "x" }.ToJson()));
        Assert.False(view.Apply("iotdsd/v1/gadgets/a/metrics", new MetricsPayload { Role = "device", Id = "a" }.ToJson()));
        Assert.False(view.Apply("iotdsd/v1/devices/a/metrics", Encoding.UTF8.GetBytes("{not json")));
        Assert.True(view.Apply("iotdsd/v1/devices/a/status", new PresencePayload { Role = "device", Id = "a", Connection = 3 }.ToJson()));
        Assert.True(view.Apply("iotdsd/v1/devices/a/metrics", new MetricsPayload { Role = "device", Id = "a", Gamma = 4 }.ToJson()));
        var row = Assert.Single(view.Rows());
        Assert.Equal(("online", 3L, 4), (row.State, row.Connection, row.Metrics!.Gamma));
        Assert.True(view.Apply("iotdsd/v1/devices/a/status", []));
        Assert.Empty(view.Rows());
    }

    [Fact]
    public void ConfigEntry_Redact_HidesSecretsKeepsOthers()
    {
        Assert.Equal(ConfigEntry.Redacted, new ConfigEntry("Mqtt:Password", "hunter2", "env", Secret: true).Redact().Value);
        Assert.Equal(ConfigEntry.Redacted, new ConfigEntry("Tls:KeyPassphrase", "p", "file").Redact().Value);
        Assert.Equal("200", new ConfigEntry("Edge:MaxTokens", "200", "default").Redact().Value);
        Assert.Null(new ConfigEntry("Mqtt:Password", null, "default", Secret: true).Redact().Value);
    }

    internal static async Task RunScenarioAsync(int port, ITestOutputHelper output)
    {
        var time = TimeProvider.System;
        var address = new BrokerAddress("127.0.0.1", port);
        var metrics = new EdgeMetrics();
        await using var pipeline = await Pipeline.StartAsync(port, deviceId: "diag-device", verifierId: "diag-verifier", pinVerifier: true, metrics: metrics);
        var settings = new DiagnosticsSettings { Broker = address, MetricsInterval = TimeSpan.FromMilliseconds(200) };
        var config = new List<ConfigEntry> { new("Mqtt:Password", "hunter2", "env IOTDSD_MQTT__PASSWORD", Secret: true), new("Edge:Gamma", "4", "default") };
        using var deviceAgent = new DiagnosticsAgent(
            settings,
            new EdgeDiagnostics(new EdgeOptions { Broker = address, DeviceId = "diag-device" }, pipeline.Worker, () => TimeSpan.FromMilliseconds(1), metrics, "draft", config, time),
            pipeline.Log.CreateLogger<DiagnosticsAgent>(),
            time);
        using var verifierAgent = new DiagnosticsAgent(settings, new VerifierDiagnostics(pipeline.Verifier, "target", [], time), pipeline.Log.CreateLogger<DiagnosticsAgent>(), time);
        await deviceAgent.StartAsync(CancellationToken.None);
        await verifierAgent.StartAsync(CancellationToken.None);
        try
        {
            var report = await pipeline.GenerateAsync("The meaning of life is", DecodingMode.Rsr, 0.8f, 150, session: "diag");
            await using var client = await DiagnosticsClient.ConnectAsync(address, null, null, pipeline.Log.CreateLogger<DiagnosticsClient>(), CancellationToken.None);
            var rows = await WaitForAsync(client, rs => rs.Any(r => r.Role == "device" && r.Metrics?.Rounds >= report.Rounds)
                && rs.Any(r => r.Role == "verifier" && r.Metrics?.Rounds >= report.Rounds && r.State == "online"));
            var device = rows.Single(r => r.Id == "diag-device").Metrics!;
            var verifier = rows.Single(r => r.Id == "diag-verifier").Metrics!;
            Assert.Equal(("device", "normal", 4, true), (device.Role, device.Degradation, device.Gamma, device.Connected));
            Assert.InRange(device.Acceptance!.Value, 0.01, 1.0);
            Assert.True(device.TokensPerSecond > 0 && device.RttMs >= 0, $"tokens/s {device.TokensPerSecond}, rtt {device.RttMs}");
            Assert.Equal(report.Tokens.Count, (int)Math.Min(device.Tokens, report.Tokens.Count));
            Assert.Empty(device.Errors);
            Assert.Equal(PresencePayload.ThisVersion, device.Version);
            Assert.True(verifier.Tokens >= 150, $"verifier committed {verifier.Tokens}");
            Assert.Equal(0, verifier.Sessions);
            output.WriteLine(FleetTable.Render(rows, ProcessClock.NowMs(time)));

            var ping = await client.SendAsync("device", "diag-device", "ping", TimeSpan.FromSeconds(10), CancellationToken.None);
            Assert.True(ping is { Ok: true, Connected: true, Id: "diag-device", Role: "device" }, $"ping: {ping}");
            var dump = await client.SendAsync("device", "diag-device", "config", TimeSpan.FromSeconds(10), CancellationToken.None);
            Assert.NotNull(dump?.Config);
            Assert.Equal(ConfigEntry.Redacted, dump.Config.Single(e => e.Key == "Mqtt:Password").Value);
            Assert.DoesNotContain("hunter2", Encoding.UTF8.GetString(dump.ToJson()), StringComparison.Ordinal);
            var bad = await client.SendAsync("verifier", "diag-verifier", "frobnicate", TimeSpan.FromSeconds(10), CancellationToken.None);
            Assert.True(bad is { Ok: false } && bad.Error!.Contains("ping", StringComparison.Ordinal), $"unknown command: {bad}");
            Assert.Null(await client.SendAsync("device", "nobody", "ping", TimeSpan.FromMilliseconds(300), CancellationToken.None));

            // Rebirth: a watcher that already holds the retained birth sees it published again.
            await using var watcher = await RawClient.ConnectAsync(port, "diag-watcher", TopicScheme.DeviceStatus("diag-device"));
            await watcher.WaitForAsync(m => PresencePayload.TryParse(m.Payload)?.State == "online");
            var rebirth = await client.SendAsync("device", "diag-device", "rebirth", TimeSpan.FromSeconds(10), CancellationToken.None);
            Assert.True(rebirth is { Ok: true }, $"rebirth: {rebirth}");
            await watcher.WaitForAsync(_ => watcher.Received.Count(m => PresencePayload.TryParse(m.Payload)?.State == "online") >= 2);
            // A command counts once its reply's PUBACK is back, which can come after the client already holds the reply.
            var counted = Stopwatch.StartNew();
            while (deviceAgent.CommandsAnswered < 3 && counted.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(20);
            }

            Assert.True(deviceAgent.CommandsAnswered >= 3, $"commands answered: {deviceAgent.CommandsAnswered}");
            Assert.Equal(0, deviceAgent.PublishFailures);
        }
        finally
        {
            await deviceAgent.StopAsync(CancellationToken.None);
            await verifierAgent.StopAsync(CancellationToken.None);
        }

        Assert.Empty(pipeline.Log.Errors);
    }

    private static async Task<IReadOnlyList<FleetRow>> WaitForAsync(DiagnosticsClient client, Func<IReadOnlyList<FleetRow>, bool> done)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!done(client.Fleet.Rows()))
        {
            await Task.Delay(50, timeout.Token);
        }

        return client.Fleet.Rows();
    }
}

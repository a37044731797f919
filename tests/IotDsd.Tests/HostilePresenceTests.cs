using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Anyone the broker lets publish on a status topic can put any bytes there. Only a well-formed <c>offline</c> status
/// of the peer the topic names, or a cleared (empty) retained status, takes a peer out; anything else is counted by
/// reason and the last good status stands: for devices' view of verifiers, and for diagnostics' view of the fleet.
/// </summary>
public sealed class HostilePresenceTests(ITestOutputHelper output)
{
    /// <summary>Payloads that say nothing valid about verifier <paramref name="id"/>, with the reason each is refused.</summary>
    private static IEnumerable<(string Reason, byte[]? Payload, int Length)> Hostile(string role, string id) =>
    [
        ("malformed", [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff], 6),
        ("malformed", Encoding.UTF8.GetBytes("{not json"), 9),
        ("malformed", Encoding.UTF8.GetBytes("""{"state":5,"role":"verifier"}"""), 29),
        ("malformed", Encoding.UTF8.GetBytes("[1,2,3]"), 7),
        ("malformed", Encoding.UTF8.GetBytes("null"), 4),
        ("wrong_role", new PresencePayload { Role = role == "verifier" ? "device" : "verifier", Id = id, State = "offline" }.ToJson(), -1),
        ("id_mismatch", new PresencePayload { Role = role, Id = id + "-other", State = "offline" }.ToJson(), -1),
        ("unknown_state", new PresencePayload { Role = role, Id = id, State = "gone" }.ToJson(), -1),
        ("too_large", new PresencePayload { Role = role, Id = id, State = "offline", Model = new string('x', 6000) }.ToJson(), -1),
        ("too_large", null, 100_000), // withheld by the connection: only its length is known
    ];

    private static int LengthOf(byte[]? payload, int length) => length >= 0 ? length : payload!.Length;

    [Fact]
    public void VerifierDirectory_OnlyOfflineOrClearedRemoves_RestIsCountedByReason()
    {
        var directory = new VerifierDirectory();
        var gone = new List<string>();
        directory.WentOffline += gone.Add;
        const string topic = "iotdsd/v1/verifiers/v1/status";
        Assert.True(directory.Update(topic, new PresencePayload { Role = "verifier", Id = "v1", Connection = 1 }.ToJson()));
        var expected = new Dictionary<string, long>();
        foreach (var (reason, payload, length) in Hostile("verifier", "v1"))
        {
            Assert.True(directory.Update(topic, payload, LengthOf(payload, length)));
            Assert.True(directory.IsOnline("v1"), $"a {reason} status took the verifier out");
            expected[reason] = expected.GetValueOrDefault(reason) + 1;
        }

        Assert.Equal(expected.OrderBy(p => p.Key), directory.Rejects.Counts.OrderBy(p => p.Key));
        Assert.Empty(gone);

        Assert.True(directory.Update(topic, new PresencePayload { Role = "verifier", Id = "v1", State = "offline" }.ToJson()));
        Assert.False(directory.IsOnline("v1"));
        Assert.True(directory.Update(topic, new PresencePayload { Role = "verifier", Id = "v1", Connection = 2 }.ToJson()));
        Assert.True(directory.IsOnline("v1"));
        Assert.True(directory.Update(topic, [])); // cleared on purpose
        Assert.False(directory.IsOnline("v1"));
        Assert.Equal(["v1", "v1"], gone);
    }

    [Fact]
    public void FleetView_DeviceStatus_OnlyOfflineMarksOfflineOnlyClearedRemoves()
    {
        var view = new FleetView(NullLogger.Instance);
        const string topic = "iotdsd/v1/devices/d1/status";
        Assert.True(view.Apply(topic, new PresencePayload { Role = "device", Id = "d1", Connection = 4, Boot = 2 }.ToJson()));
        foreach (var (reason, payload, length) in Hostile("device", "d1"))
        {
            Assert.False(view.Apply(topic, payload, LengthOf(payload, length)), $"a {reason} status was taken");
            var row = Assert.Single(view.Rows());
            Assert.Equal(("online", 4L, 2L), (row.State, row.Connection, row.Boot!.Value));
        }

        Assert.Equal(10, view.Rejects.Total);
        Assert.True(view.Apply(topic, new PresencePayload { Role = "device", Id = "d1", State = "offline", Boot = 2 }.ToJson()));
        Assert.Equal("offline", Assert.Single(view.Rows()).State);
        Assert.True(view.Apply(topic, []));
        Assert.Empty(view.Rows());
    }

    [SkippableFact]
    public async Task HostileStatuses_OnMosquitto_LiveDeviceCompletes_NewDeviceStillFindsTheVerifier_DiagKeepsTheDevice()
    {
        await using var mosquitto = await MosquittoProcess.TryStart();
        var log = new ErrorLog();
        const string verifierId = "hv";
        var verifierTopic = $"iotdsd/v1/verifiers/{verifierId}/status";
        using var verifier = await FaultRig.StartVerifierAsync(mosquitto.Port, verifierId, log);
        await using var diag = await DiagnosticsClient.ConnectAsync(new BrokerAddress("127.0.0.1", mosquitto.Port), null, null, NullLogger.Instance, CancellationToken.None);
        await using var worker = await FaultRig.StartDeviceAsync(mosquitto.Port, "hostile-device", null, log, TimeSpan.FromSeconds(2));

        const string prompt = "Once upon a time";
        const int tokens = 400;
        var settings = new SessionSettings { SessionId = "hostile", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = tokens, Gamma = 4 };
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        var committed = 0;
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        while (Volatile.Read(ref committed) < 20 && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        Assert.False(run.IsCompleted, "the generation ended before any hostile status was sent");
        await using (var hostile = await RawClient.ConnectAsync(mosquitto.Port, "hostile-publisher"))
        {
            foreach (var (reason, payload, length) in Hostile("verifier", verifierId))
            {
                var bytes = payload ?? new byte[length];
                await hostile.PublishAsync(verifierTopic, bytes, retain: false);
                await hostile.PublishAsync(verifierTopic, bytes, retain: true);
            }

            foreach (var (_, payload, length) in Hostile("device", "hostile-device"))
            {
                await hostile.PublishAsync("iotdsd/v1/devices/hostile-device/status", payload ?? new byte[length], retain: true);
            }
        }

        var report = await run.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(reference, report.Tokens);
        Assert.Equal(tokens, Volatile.Read(ref committed));
        Assert.Equal(0L, report.Reopens);
        Assert.True(worker.Verifiers.IsOnline(verifierId), "a hostile status took the verifier out of the device's view");
        var counts = worker.Verifiers.Rejects.Counts;
        output.WriteLine("device refused: " + string.Join(", ", counts.Select(p => $"{p.Key} {p.Value}")));
        foreach (var reason in new[] { "malformed", "wrong_role", "id_mismatch", "unknown_state", "too_large" })
        {
            Assert.True(counts.GetValueOrDefault(reason) > 0, $"no {reason} status was counted");
        }

        // The garbage was retained last: the verifier saw its status replaced and published its birth again, so a
        // device that starts now still finds it.
        await using (var fresh = await FaultRig.StartDeviceAsync(mosquitto.Port, "hostile-late", null, log, TimeSpan.FromSeconds(2)))
        {
            var late = await fresh.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings with { SessionId = "late", MaxTokens = 40 }, null, CancellationToken.None)
                .WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(reference.Take(40), late.Tokens);
        }

        Assert.True(verifier.StatusRejects.Total > 0, "the verifier did not notice its status being replaced");
        var row = Assert.Single(diag.Fleet.Rows(), r => r.Id == "hostile-device");
        Assert.Equal("online", row.State);
        Assert.True(diag.Fleet.Rejects.Total >= 10, $"diagnostics counted {diag.Fleet.Rejects.Total} refused statuses");
        Assert.Empty(log.Errors);
    }
}

using IotDsd.Testbed.Faults;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Hosting;

namespace IotDsd.Tests.Infrastructure;

/// <summary>Pieces the fault tests share: an in-process verifier, and a device tuned to notice faults quickly.</summary>
public static class FaultRig
{
    /// <summary>Starts an in-process verifier on the broker at <paramref name="port"/> and waits until it serves.</summary>
    public static async Task<VerifierService> StartVerifierAsync(int port, string verifierId, ErrorLog log)
    {
        var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", port), VerifierId = verifierId }, TestEnvironment.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30));
        return verifier;
    }

    /// <summary>A started draft worker on <paramref name="port"/> (usually a link emulator's) with short timeouts and backoff.</summary>
    public static async Task<DraftWorker> StartDeviceAsync(
        int port, string deviceId, string? verifierId, ErrorLog log, TimeSpan requestTimeout, Func<EdgeOptions, EdgeOptions>? adjust = null)
    {
        var options = FaultSoak.DeviceOptions(port, deviceId, verifierId, requestTimeout);
        var worker = new DraftWorker(adjust is null ? options : adjust(options), TestEnvironment.Draft, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        return worker;
    }
}

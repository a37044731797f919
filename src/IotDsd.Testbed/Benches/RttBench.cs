using System.Diagnostics;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Testbed.Load;
using IotDsd.Testbed.Reporting;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The measurement behind <c>iotdsd bench rtt</c>: what one speculative round costs beyond the MQTT round trip
/// itself. Measures a bare QoS 1 ping-pong over the same client stack, then greedy rounds through the pipeline, and
/// subtracts drafting and verification time from each round.
/// </summary>
internal static class RttBench
{
    private const string DeviceId = "bench-device";
    private const string VerifierId = "bench-verifier";

    /// <summary>The greedy rounds' prompt.</summary>
    public const string Prompt = "The meaning of life is";

    /// <summary>Runs both measurements on <paramref name="address"/> (an embedded broker when null) and returns the report's text.</summary>
    public static async Task<string> RunAsync(BrokerAddress? address, int n, int payload, ILanguageModel draft, ILanguageModel target, int[] prompt, CancellationToken ct)
    {
        EmbeddedBroker? embedded = null;
        if (address is null)
        {
            embedded = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
            address = new BrokerAddress("127.0.0.1", embedded.Port);
        }

        try
        {
            var progress = new ProgressReporter("bench rtt");
            progress.Start($"bare QoS 1 ping-pongs on {address}", n + PingWarmUp, "ping-pongs");
            var ping = await PingPongAsync(address, n, payload, progress, ct).ConfigureAwait(false);
            progress.Done();
            progress.Start("greedy speculative rounds through a verifier and a device", GreedyWarmUp + n, "tokens");
            var report = await GreedyRoundsAsync(address, draft, target, prompt, n, progress, ct).ConfigureAwait(false);
            progress.Done();
            var overhead = report.RoundMillis.Select((r, i) => r - report.DraftMillis[i] - report.VerifyMillis[i]).ToList();
            double P(IReadOnlyList<double> v, double q) => Percentiles.Of(v, q);
            return string.Create(CultureInfo.InvariantCulture,
                $"broker {address}{(embedded is null ? "" : " (embedded)")}, {n} samples\n" +
                $"bare QoS 1 ping-pong ({payload} B):  p50 {P(ping, 0.5):0.000} ms  p99 {P(ping, 0.99):0.000} ms\n" +
                $"greedy round, device view:        p50 {P(report.RoundMillis, 0.5):0.000} ms  p99 {P(report.RoundMillis, 0.99):0.000} ms  ({report.Rounds} rounds)\n" +
                $"  drafting on the device:         p50 {P(report.DraftMillis, 0.5):0.000} ms\n" +
                $"  verification (forward pass):    p50 {P(report.VerifyMillis, 0.5):0.000} ms\n" +
                $"  round minus draft and verify:   p50 {P(overhead, 0.5):0.000} ms  p99 {P(overhead, 0.99):0.000} ms\n" +
                $"pipeline overhead over bare RTT:  p50 {P(overhead, 0.5) - P(ping, 0.5):0.000} ms per round");
        }
        finally
        {
            if (embedded is not null)
            {
                await embedded.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                await RetainedCleanup.ClearAsync(address, null, null, RetainedCleanup.Topics([DeviceId], [VerifierId]), CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private const int PingWarmUp = 50;
    private const int GreedyWarmUp = 50;

    private static async Task<List<double>> PingPongAsync(BrokerAddress address, int n, int size, ProgressReporter progress, CancellationToken ct)
    {
        const string pingTopic = "iotdsd/v1/bench/ping";
        const string pongTopic = "iotdsd/v1/bench/pong";
        var log = NullLogger.Instance;
        await using var echo = new MqttConnection(new MqttSettings { Broker = address, ClientId = $"iotdsd-bench-echo-{Environment.ProcessId}" }, _ => false, log);
        await using var pinger = new MqttConnection(new MqttSettings { Broker = address, ClientId = $"iotdsd-bench-ping-{Environment.ProcessId}" }, _ => false, log);
        await echo.ConnectAsync([pingTopic], ct).ConfigureAwait(false);
        await pinger.ConnectAsync([pongTopic], ct).ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var echoing = Task.Run(async () =>
        {
            await foreach (var m in echo.Inbound.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                await echo.PublishRawAsync(pongTopic, m.Raw ?? [], retain: false, stop.Token).ConfigureAwait(false);
            }
        }, CancellationToken.None);
        var payload = new byte[size];
        var samples = new List<double>(n);
        for (var i = 0; i < n + PingWarmUp; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await pinger.PublishRawAsync(pingTopic, payload, retain: false, ct).ConfigureAwait(false);
            await pinger.Inbound.ReadAsync(ct).ConfigureAwait(false);
            if (i >= PingWarmUp)
            {
                samples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }

            progress.Report(i + 1);
        }

        await stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await echoing.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        return samples;
    }

    private static async Task<GenerationReport> GreedyRoundsAsync(BrokerAddress address, ILanguageModel draft, ILanguageModel target, int[] prompt, int tokens, ProgressReporter progress, CancellationToken ct)
    {
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = VerifierId, BatchWait = TimeSpan.Zero }, target, NullLogger<VerifierService>.Instance);
        await verifier.StartAsync(ct).ConfigureAwait(false);
        await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = DeviceId, VerifierId = VerifierId, Sequential = true }, draft, NullLogger.Instance);
            await worker.StartAsync(ct).ConfigureAwait(false);
            var settings = new SessionSettings { SessionId = "bench", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens, Gamma = 4 };
            await worker.GenerateAsync(prompt, settings with { SessionId = "warm", MaxTokens = GreedyWarmUp }, _ => progress.Advance(), ct).ConfigureAwait(false);
            return await worker.GenerateAsync(prompt, settings, _ => progress.Advance(), ct).ConfigureAwait(false);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}

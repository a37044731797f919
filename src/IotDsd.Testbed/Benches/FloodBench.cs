using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Testbed.Reporting;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The measurement behind <c>iotdsd bench flood</c>: how much one flooding device slows the others. Honest devices
/// generate greedily through one verifier (with its default limits) twice — alone, then while a flooder publishes as
/// fast as the broker takes it, a mix of junk and session-open spam on its own rounds topic — and their round
/// latencies are compared.
/// </summary>
internal static class FloodBench
{
    /// <summary>The honest devices' prompt.</summary>
    public const string Prompt = "The meaning of life is";

    /// <summary>Runs both phases on an embedded broker and returns the report's text.</summary>
    public static async Task<string> RunAsync(ILanguageModel draft, ILanguageModel target, int[] prompt, int n, int k, int inFlight, CancellationToken ct)
    {
        await using var broker = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "flood-verifier" }, target, NullLogger<VerifierService>.Instance);
        await verifier.StartAsync(ct).ConfigureAwait(false);
        await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
        var workers = new List<DraftWorker>();
        try
        {
            for (var i = 0; i < n; i++)
            {
                var w = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = $"honest-{i}", VerifierId = "flood-verifier" }, draft, NullLogger.Instance);
                await w.StartAsync(ct).ConfigureAwait(false);
                workers.Add(w);
            }

            var progress = new ProgressReporter("bench flood");
            await PhaseAsync(workers, prompt, 50, "warm", progress, "warm-up", ct).ConfigureAwait(false);
            var calm = await PhaseAsync(workers, prompt, k, "calm", progress, "honest devices alone", ct).ConfigureAwait(false);
            await using var flooder = new MqttConnection(new MqttSettings { Broker = address, ClientId = "iotdsd-device-flooder" }, _ => false, NullLogger.Instance);
            await flooder.ConnectAsync([], ct).ConfigureAwait(false);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var flood = Task.Run(() => FloodAsync(flooder, inFlight, stop.Token), CancellationToken.None);
            await Task.Delay(500, ct).ConfigureAwait(false);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var errorsBefore = verifier.Errors.Total;
            var stormy = await PhaseAsync(workers, prompt, k, "flood", progress, "honest devices while one floods", ct).ConfigureAwait(false);
            var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            var refused = verifier.Errors.Total - errorsBefore;
            await stop.CancelAsync().ConfigureAwait(false);
            var sent = await flood.ConfigureAwait(false);

            double P(List<double> v, double q) => Percentiles.Of(v, q);
            return string.Create(CultureInfo.InvariantCulture,
                $"{n} honest devices x {k} greedy tokens, one verifier (default limits), embedded broker\n" +
                $"round latency alone:        p50 {P(calm, 0.5):0.000} ms  p99 {P(calm, 0.99):0.000} ms  ({calm.Count} rounds)\n" +
                $"round latency under flood:  p50 {P(stormy, 0.5):0.000} ms  p99 {P(stormy, 0.99):0.000} ms  ({stormy.Count} rounds)\n" +
                $"slowdown:                   p50 x{P(stormy, 0.5) / P(calm, 0.5):0.00}  p99 +{P(stormy, 0.99) - P(calm, 0.99):0.000} ms\n" +
                $"flood: {sent} publishes in total, about {refused / seconds:0} refusals/s at the verifier during the phase\n" +
                $"refusals by limit: {string.Join(", ", verifier.Limits.Counters.Snapshot().Select(kv => $"{kv.Key} {kv.Value}"))}\n" +
                $"refusals by code:  {string.Join(", ", verifier.Errors.Snapshot().Select(kv => $"{kv.Key} {kv.Value}"))}");
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.DisposeAsync().ConfigureAwait(false);
            }

            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<List<double>> PhaseAsync(
        List<DraftWorker> workers, int[] prompt, int tokens, string phase, ProgressReporter progress, string what, CancellationToken ct)
    {
        progress.Start(what, (long)tokens * workers.Count, "tokens");
        var runs = workers.Select((w, i) => w.GenerateAsync(
            prompt,
            new SessionSettings { SessionId = $"{phase}-{i}", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens, Gamma = 4 },
            _ => progress.Advance(),
            ct)).ToList();
        var reports = await Task.WhenAll(runs).ConfigureAwait(false);
        progress.Done();
        return reports.SelectMany(r => r.RoundMillis).ToList();
    }

    /// <summary>Publishes junk and open-session spam on the flooder's own rounds topic until stopped; returns how many.</summary>
    private static async Task<long> FloodAsync(MqttConnection flooder, int inFlight, CancellationToken ct)
    {
        var topic = TopicScheme.VerifierRounds("flood-verifier", "flooder");
        var junk = new byte[] { 0x93, 0x01, 0x02, 0xC1 };
        long sent = 0;
        var pending = new List<Task>(inFlight);
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var payload = sent % 2 == 0
                    ? junk
                    : WireCodec.Encode(new OpenSession { SessionId = $"spam-{sent % 1000}", DeviceId = "flooder", Epoch = 1, Mode = DecodingMode.Greedy, VocabSize = 256, MaxGamma = 4 });
                pending.Add(flooder.PublishRawAsync(topic, payload, retain: false, ct));
                sent++;
                if (pending.Count >= inFlight)
                {
                    var done = await Task.WhenAny(pending).ConfigureAwait(false);
                    pending.Remove(done);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (MqttPublishException)
        {
        }

        try
        {
            await Task.WhenAll(pending).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or MqttPublishException)
        {
        }

        return sent;
    }
}

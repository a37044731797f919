using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Baseline;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Baseline;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Testbed.Load;

/// <summary>
/// The load generator behind <c>iotdsd loadgen</c> and <c>iotdsd bench capacity</c>: N simulated devices, each its own
/// MQTT client and session, generating at once against real verifiers (or the server-only baseline). Without a broker
/// it starts an embedded broker and an in-process verifier or server.
/// </summary>
internal static class LoadGenerator
{
    /// <summary>The shipped prompt set (devices/prompts.txt, embedded): device d continues prompt d mod its length.</summary>
    internal static string[] DefaultPrompts()
    {
        using var stream = typeof(LoadGenerator).Assembly.GetManifestResourceStream("IotDsd.Testbed.prompts.txt")
            ?? throw new InvalidOperationException("the default prompt set is not embedded in this build");
        using var reader = new StreamReader(stream);
        return [.. reader.ReadToEnd().Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Trim().Length > 0)];
    }

    /// <summary>What one load run drives: how many devices, against which system and broker.</summary>
    internal sealed record LoadSpec(
        int Devices, int Samples, bool Baseline, string? Broker, string? Id, int MaxBatch, string? Username, string? Password, TimeSpan RequestTimeout, bool AdaptiveGamma, bool AdaptInSampling = false, TimeSpan? BatchWait = null, bool Sequential = false);

    /// <summary>
    /// One load run: starts an embedded broker and an in-process verifier or server unless <see cref="LoadSpec.Broker"/>
    /// names one, runs every device's sessions at once, and reports.
    /// </summary>
    internal static async Task<LoadReport> RunAsync(
        LoadSpec spec, ILanguageModel? draft, ILanguageModel target, int[][] prompts, SessionSettings[] settings, Dictionary<string, int[]>? references,
        List<(string Name, int Pid)> watched, ILoggerFactory logging, CancellationToken ct)
    {
        var n = spec.Devices;
        var useBaseline = spec.Baseline;
        EmbeddedBroker? embedded = null;
        VerifierService? verifier = null;
        BaselineServer? server = null;
        BrokerAddress? address = null;
        LoadRun? run = null;
        var serverId = spec.Id ?? (useBaseline ? "server-1" : null);
        watched = [.. watched];
        try
        {
            if (spec.Broker is { } text)
            {
                address = BrokerAddress.TryParse(text, out var error) ?? throw new TestbedException(error!);
            }
            else
            {
                embedded = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
                address = new BrokerAddress("127.0.0.1", embedded.Port);
                var options = new VerifierOptions { Broker = address, VerifierId = serverId ?? "verifier-1", MaxBatch = spec.MaxBatch, MaxSessions = Math.Max(10_000, n) };
                if (spec.BatchWait is { } wait)
                {
                    options = options with { BatchWait = wait };
                }

                if (options.Validate() is { } bad)
                {
                    throw new TestbedException(bad);
                }

                if (useBaseline)
                {
                    server = new BaselineServer(options, target, logging.CreateLogger<BaselineServer>());
                    await server.StartAsync(ct).ConfigureAwait(false);
                    await server.Ready.WaitAsync(ct).ConfigureAwait(false);
                }
                else
                {
                    verifier = new VerifierService(options, target, logging.CreateLogger<VerifierService>());
                    await verifier.StartAsync(ct).ConfigureAwait(false);
                    await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
                }

                watched.Add(("loadgen+broker+" + (useBaseline ? "server" : "verifier"), Environment.ProcessId));
            }

            var processes = new ProcessWatch(watched);
            run = new LoadRun(n, spec.Samples, address, spec.Username, spec.Password, spec.RequestTimeout, spec.AdaptiveGamma, spec.AdaptInSampling, spec.Sequential, processes, logging);
            var (sessionSamples, errors, wall) = useBaseline
                ? await run.BaselineAsync(serverId!, prompts, settings, references, ct).ConfigureAwait(false)
                : await run.SpeculativeAsync(draft ?? throw new ArgumentNullException(nameof(draft)), serverId, prompts, settings, references, ct).ConfigureAwait(false);
            var usage = processes.Stop();
            var stats = (VerifierStats?)verifier?.Stats ?? server?.Stats;
            return LoadReport.From(
                useBaseline ? "baseline" : "iotdsd",
                useBaseline ? (settings[0].Sampling.IsGreedy ? "greedy" : "sampling") : settings[0].Mode.ToString().ToLowerInvariant(),
                n, sessionSamples, errors, wall, stats?.MaxBatch ?? 0, stats?.MeanBatch, usage);
        }
        finally
        {
            if (verifier is not null)
            {
                await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
                verifier.Dispose();
            }

            if (server is not null)
            {
                await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
                server.Dispose();
            }

            if (embedded is not null)
            {
                await embedded.DisposeAsync().ConfigureAwait(false);
            }
            else if (address is { } external && run is { AnyConnected: true })
            {
                await RetainedCleanup.ClearAsync(external, spec.Username, spec.Password, RetainedCleanup.Topics(Enumerable.Range(0, n).Select(LoadRun.DeviceId), []), CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Target-only texts to compare with: greedy speculative output must equal them byte for byte, and the baseline
    /// must equal them in every mode (it samples with the reference's own randomness).
    /// </summary>
    internal static Dictionary<string, int[]>? References(ILanguageModel target, int[][] prompts, SessionSettings[] settings, int samples, bool baseline)
    {
        if (!baseline && !settings[0].Sampling.IsGreedy)
        {
            return null;
        }

        // Greedy text depends on the prompt and length alone: the devices given one prompt share one reference.
        var greedy = new int[]?[prompts.Length];
        return settings.Select((s, i) => (s, p: i / samples % prompts.Length)).ToDictionary(x => x.s.SessionId, x => x.s.Sampling.IsGreedy
            ? greedy[x.p] ??= Autoregressive.Generate(target, prompts[x.p], x.s.Sampling, x.s.Seed, x.s.SessionId, x.s.MaxTokens)
            : Autoregressive.Generate(target, prompts[x.p], x.s.Sampling, x.s.Seed, x.s.SessionId, x.s.MaxTokens));
    }

    /// <summary>The devices of one load run.</summary>
    private sealed class LoadRun(int devices, int samples, BrokerAddress broker, string? username, string? password, TimeSpan requestTimeout, bool adaptiveGamma, bool adaptInSampling, bool sequential, ProcessWatch processes, ILoggerFactory logging)
    {
        public static string DeviceId(int device) => string.Create(CultureInfo.InvariantCulture, $"lg{device}");

        private EdgeOptions Options(int device, string? verifierId) => new()
        {
            DeviceId = DeviceId(device),
            Broker = broker,
            Username = username,
            Password = password,
            VerifierId = verifierId,
            RequestTimeout = requestTimeout,
            AdaptiveGamma = adaptiveGamma,
            AdaptGammaInSampling = adaptInSampling,
            Sequential = sequential,
        };

        public async Task<(List<SessionSample>, List<string>, double)> SpeculativeAsync(
            ILanguageModel draft, string? verifierId, int[][] prompts, SessionSettings[] settings, Dictionary<string, int[]>? references, CancellationToken ct)
        {
            var workers = new DraftWorker[devices];
            try
            {
                for (var d = 0; d < devices; d++)
                {
                    workers[d] = new DraftWorker(Options(d, verifierId), draft, logging.CreateLogger<DraftWorker>());
                }

                await StartAllAsync(workers.Select(w => w.StartAsync(ct))).ConfigureAwait(false);
                return await RunAsync(async (d, s) =>
                {
                    var r = await workers[d].GenerateAsync(prompts[d % prompts.Length], s, null, ct).ConfigureAwait(false);
                    return new SessionSample(
                        r.Tokens.Count, s.MaxTokens, Matches(references, s.SessionId, r.Tokens), r.Elapsed.TotalMilliseconds, r.TimeToFirstToken.TotalMilliseconds,
                        r.RoundMillis, r.UplinkPayloadBytes, r.DownlinkPayloadBytes, r.UplinkWireBytes, r.DownlinkWireBytes, r.MeanBatch, r.Retries, 0, r.Drafted, r.Accepted)
                    {
                        Verifier = r.VerifierId, MaxBatch = r.MaxBatch, Rounds = r.DraftedPerRound.Count, UndraftedRounds = r.DraftedPerRound.Count(n => n == 0),
                    };
                }, settings).ConfigureAwait(false);
            }
            finally
            {
                foreach (var w in workers.Where(w => w is not null))
                {
                    await w.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        public async Task<(List<SessionSample>, List<string>, double)> BaselineAsync(
            string serverId, int[][] prompts, SessionSettings[] settings, Dictionary<string, int[]>? references, CancellationToken ct)
        {
            var clients = new StreamClient[devices];
            try
            {
                for (var d = 0; d < devices; d++)
                {
                    clients[d] = new StreamClient(Options(d, null), serverId, logging.CreateLogger<StreamClient>());
                }

                await StartAllAsync(clients.Select(c => c.StartAsync(ct))).ConfigureAwait(false);
                return await RunAsync(async (d, s) =>
                {
                    var r = await clients[d].GenerateAsync(prompts[d % prompts.Length], s.Sampling, s.Seed, s.SessionId, s.MaxTokens, null, ct).ConfigureAwait(false);
                    return new SessionSample(
                        r.Tokens.Count, s.MaxTokens, Matches(references, s.SessionId, r.Tokens), r.Elapsed.TotalMilliseconds, r.TimeToFirstToken.TotalMilliseconds,
                        r.TokenGapMillis, r.UplinkPayloadBytes, r.DownlinkPayloadBytes, r.UplinkWireBytes, r.DownlinkWireBytes, r.MeanBatch, 0, r.Duplicates, 0, 0) { MaxBatch = r.MaxBatch };
                }, settings).ConfigureAwait(false);
            }
            finally
            {
                foreach (var c in clients.Where(c => c is not null))
                {
                    await c.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        /// <summary>True once any device has connected: only then can the run have left retained messages behind.</summary>
        public bool AnyConnected { get; private set; }

        private async Task StartAllAsync(IEnumerable<Task> starts)
        {
            var all = starts.ToList();
            try
            {
                await Task.WhenAll(all).ConfigureAwait(false);
            }
            finally
            {
                AnyConnected = all.Any(t => t.IsCompletedSuccessfully);
            }
        }

        /// <summary>Every device runs its samples back to back; all devices at once.</summary>
        private async Task<(List<SessionSample>, List<string>, double)> RunAsync(Func<int, SessionSettings, Task<SessionSample>> generate, SessionSettings[] settings)
        {
            var results = new ConcurrentBag<SessionSample>();
            var errors = new ConcurrentBag<string>();
            // Warm-up, not measured: one short generation per device, so JIT and first connections are not counted.
            await Task.WhenAll(Enumerable.Range(0, devices).Select(d => Task.Run(async () =>
            {
                var s = settings[d * samples];
                try
                {
                    await generate(d, s with { SessionId = $"{s.SessionId}-warm", MaxTokens = Math.Min(8, s.MaxTokens) }).ConfigureAwait(false);
                }
                catch (GenerationException)
                {
                }
            }))).ConfigureAwait(false);
            processes.Start();
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(Enumerable.Range(0, devices).Select(d => Task.Run(async () =>
            {
                for (var i = 0; i < samples; i++)
                {
                    try
                    {
                        results.Add(await generate(d, settings[(d * samples) + i]).ConfigureAwait(false));
                    }
                    catch (GenerationException ex)
                    {
                        errors.Add($"lg{d}: {ex.Message}");
                    }
                }
            }))).ConfigureAwait(false);
            return ([.. results], [.. errors], Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        private static bool Matches(Dictionary<string, int[]>? references, string sessionId, IReadOnlyList<int> tokens) =>
            references is null || !references.TryGetValue(sessionId, out var reference) || reference.AsSpan().SequenceEqual(tokens.ToArray());
    }
}

using System.Diagnostics;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Faults;

/// <summary>What a fault soak injects: the link cuts (seeded lengths) and whether the broker restart and the verifier kill coincide.</summary>
public sealed record FaultSoakPlan
{
    public int Cuts { get; init; } = 50;
    public TimeSpan CutMin { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan CutMax { get; init; } = TimeSpan.FromSeconds(10);
    public int CutSeed { get; init; } = 2024;

    /// <summary>Restart the broker and kill the verifier at the same moment (35 % of the tokens) rather than at 35 % and 65 %.</summary>
    public bool Together { get; init; }

    /// <summary>The device's request timeout; short, so a dead verifier is noticed quickly.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(1.5);

    /// <summary>Null, or what is wrong, named by the <c>iotdsd bench faults</c> flag that sets it.</summary>
    public string? Validate() =>
        Cuts is < 0 or > 10_000 ? $"--cuts must be between 0 and 10000, got {Cuts}"
        : CutMin < TimeSpan.Zero || CutMax < CutMin || CutMax > TimeSpan.FromMinutes(10) ? $"--cut-ms must satisfy 0 <= MIN <= MAX <= 600000, got {CutMin.TotalMilliseconds}-{CutMax.TotalMilliseconds}"
        : RequestTimeout < TimeSpan.FromMilliseconds(100) || RequestTimeout > TimeSpan.FromMinutes(1) ? $"--request-timeout-ms must be between 100 and 60000, got {RequestTimeout.TotalMilliseconds}"
        : null;
}

/// <summary>What a fault soak measured; <see cref="Lines"/> is the human summary.</summary>
public sealed record FaultSoakResult
{
    public required IReadOnlyList<int> Reference { get; init; }
    public required GenerationReport Report { get; init; }

    /// <summary>Tokens handed to the output callback: equal to the tokens asked for when none was lost or duplicated.</summary>
    public required int Committed { get; init; }
    public required TimeSpan Wall { get; init; }
    public required long Cuts { get; init; }
    public required double SecondsDown { get; init; }
    public required bool BrokerRestarted { get; init; }
    public required bool VerifierReplaced { get; init; }

    /// <summary>From each restore of the link to the next committed token, ascending.</summary>
    public required double[] RestoreToTokenMillis { get; init; }

    public bool TextMatches => Reference.SequenceEqual(Report.Tokens) && Committed == Report.Tokens.Count;

    public IEnumerable<string> Lines(string mode)
    {
        var f = Report.Faults;
        var device = f.RecoveryMillis.Order().ToArray();
        yield return Invariant($"{mode}: {Report.Tokens.Count} tokens in {Wall.TotalSeconds:0.0} s; {Cuts} cuts ({SecondsDown:0.0} s down), broker restart {BrokerRestarted}, verifier replaced {VerifierReplaced}");
        yield return Invariant($"  text equals the fault-free run: {TextMatches} ({Committed} tokens committed, {Reference.Count} expected)");
        yield return Invariant($"  rounds {Report.Rounds}, retried requests {Report.Retries}, reopens {Report.Reopens}, link drops {f.LinkDrops}, dead links {f.DeadLinks}, unverified tokens shown {f.UnverifiedTokensShown}");
        yield return $"  time at level (ms): {string.Join(", ", f.MillisAtLevel.Select(kv => Invariant($"{kv.Key}={kv.Value:0}")))}";
        yield return $"  failover (ms): {string.Join(", ", f.FailoverMillis.Select(v => v.ToString("0", CultureInfo.InvariantCulture)))}";
        yield return Invariant($"  recovery, restore -> next token (ms): median {Median(RestoreToTokenMillis):0}, max {Max(RestoreToTokenMillis):0}, n={RestoreToTokenMillis.Length}");
        yield return Invariant($"  recovery, reconnect -> next token (ms): median {Median(device):0}, max {Max(device):0}, n={device.Length}");
    }

    private static double Median(double[] sorted) => sorted.Length == 0 ? 0 : sorted[sorted.Length / 2];

    private static double Max(double[] sorted) => sorted.Length == 0 ? 0 : sorted[^1];

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// A long generation through Mosquitto (child process, persistence on) while the device's link is cut again and again
/// through the link emulator, the broker is restarted once and the verifier process is killed (SIGKILL) and replaced by
/// another. The same settings first run fault-free through an in-process broker and verifier, for the text to compare.
/// Faults are placed by progress (committed tokens), so every one lands mid-generation however fast the machine is.
/// <paramref name="progress"/> gets a line per injected fault; <paramref name="committed"/> gets the tokens committed so
/// far by the run named (<see cref="ReferenceRun"/>, then <see cref="SoakRun"/>), for a progress display.
/// </summary>
public sealed class FaultSoak(
    ILanguageModel draft, ILanguageModel target, string targetDirectory, ILoggerFactory? loggers = null, Action<string>? progress = null, Action<string, int>? committed = null)
{
    public const string ReferenceRun = "reference";
    public const string SoakRun = "soak";

    private readonly ILoggerFactory _loggers = loggers ?? NullLoggerFactory.Instance;

    /// <summary>Device options tuned to notice faults quickly: short timeouts, backoff capped at 1 s.</summary>
    public static EdgeOptions DeviceOptions(int port, string deviceId, string? verifierId, TimeSpan requestTimeout) => new()
    {
        Broker = new BrokerAddress("127.0.0.1", port),
        DeviceId = deviceId,
        VerifierId = verifierId,
        RequestTimeout = requestTimeout,
        PublishTimeout = TimeSpan.FromSeconds(Math.Min(2, requestTimeout.TotalSeconds)),
        ReconnectMaxDelay = TimeSpan.FromSeconds(1),
        DiscoveryTimeout = TimeSpan.FromSeconds(90),
        GiveUpAfter = TimeSpan.FromSeconds(120),
    };

    /// <summary>The fault-free text of <paramref name="settings"/>: in-process broker and verifier, no faults.</summary>
    public async Task<int[]> ReferenceAsync(int[] prompt, SessionSettings settings, CancellationToken ct)
    {
        await using var broker = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
        using var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), VerifierId = "reference" }, target, _loggers.CreateLogger<VerifierService>());
        await verifier.StartAsync(ct).ConfigureAwait(false);
        try
        {
            await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            await using var worker = new DraftWorker(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", broker.Port), DeviceId = "reference-device" }, draft, _loggers.CreateLogger<DraftWorker>());
            await worker.StartAsync(ct).ConfigureAwait(false);
            var count = 0;
            return [.. (await worker.GenerateAsync(prompt, settings, _ => committed?.Invoke(ReferenceRun, ++count), ct).ConfigureAwait(false)).Tokens];
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Runs the soak on <paramref name="mosquitto"/> (persistence on: it is restarted once).</summary>
    public async Task<FaultSoakResult> RunAsync(MosquittoChild mosquitto, int[] prompt, SessionSettings settings, FaultSoakPlan plan, string deviceId, CancellationToken ct)
    {
        var reference = await ReferenceAsync(prompt, settings, ct).ConfigureAwait(false);
        var broker = $"127.0.0.1:{mosquitto.Port}";
        IotdsdProcess Verifier(string id) => IotdsdProcess.Start("verifier", "--broker", broker, "--id", id, "--target", targetDirectory);
        IotdsdProcess? replacement = null;
        var first = Verifier("soak-a");
        try
        {
            await using var link = new LinkEmulator(0, "127.0.0.1", mosquitto.Port);
            await link.StartAsync().ConfigureAwait(false);
            await using var worker = new DraftWorker(DeviceOptions(link.Port, deviceId, null, plan.RequestTimeout), draft, _loggers.CreateLogger<DraftWorker>());
            await worker.StartAsync(ct).ConfigureAwait(false);

            var commitTimes = new List<long>();
            int Committed()
            {
                lock (commitTimes)
                {
                    return commitTimes.Count;
                }
            }

            var started = Stopwatch.GetTimestamp();
            var run = worker.GenerateAsync(prompt, settings, _ =>
            {
                int count;
                lock (commitTimes)
                {
                    commitTimes.Add(Stopwatch.GetTimestamp());
                    count = commitTimes.Count;
                }

                committed?.Invoke(SoakRun, count);
            }, ct);

            var outages = new LinkChaos { Count = plan.Cuts, CutMin = plan.CutMin, CutMax = plan.CutMax, Seed = plan.CutSeed }.Plan();
            var restores = new List<long>();
            var tokens = settings.MaxTokens;
            var brokerRestartAt = tokens * 35 / 100;
            var verifierKillAt = plan.Together ? brokerRestartAt : tokens * 65 / 100;
            bool brokerRestarted = false, verifierKilled = false;
            double secondsDown = 0;

            // Checked while waiting for each milestone and again before each cut, so a device that runs ahead of the
            // milestones still meets the broker restart and the verifier kill near the tokens they are planned for.
            var committedAtFault = -1; // tokens committed when the last fault was injected
            async Task InjectDueFaultsAsync()
            {
                if (!brokerRestarted && Committed() >= brokerRestartAt)
                {
                    brokerRestarted = true;
                    await mosquitto.StopAsync().ConfigureAwait(false);
                    await Task.Delay(500, ct).ConfigureAwait(false);
                    await mosquitto.StartAsync().ConfigureAwait(false);
                    progress?.Invoke($"broker restarted at token {Committed()}");
                    committedAtFault = Committed();
                }

                if (!verifierKilled && Committed() >= verifierKillAt)
                {
                    verifierKilled = true;
                    await first.KillAsync().ConfigureAwait(false);
                    replacement = Verifier("soak-b");
                    progress?.Invoke($"verifier soak-a killed at token {Committed()}, soak-b started");
                    committedAtFault = Committed();
                }
            }

            async Task WaitUntilAsync(Func<bool> done)
            {
                while (!done() && !run.IsCompleted)
                {
                    await Task.Delay(5, ct).ConfigureAwait(false);
                    await InjectDueFaultsAsync().ConfigureAwait(false);
                }
            }

            var committedAtRestore = -1;
            for (var i = 0; i < outages.Count && !run.IsCompleted; i++)
            {
                var milestone = (i + 1) * tokens / (outages.Count + 2);
                await WaitUntilAsync(() => Committed() >= milestone).ConfigureAwait(false);

                // A link is up for a while between outages: the device commits at least one token before the next cut.
                await WaitUntilAsync(() => Committed() > committedAtRestore).ConfigureAwait(false);
                await InjectDueFaultsAsync().ConfigureAwait(false);

                // The session recovers from the broker restart or the verifier kill before the next cut, so the
                // failover time measures the failover, not a cut that happened to overlap it.
                await WaitUntilAsync(() => Committed() > committedAtFault).ConfigureAwait(false);
                link.Cut();
                await Task.Delay(outages[i].Down, ct).ConfigureAwait(false);
                link.Restore();
                secondsDown += outages[i].Down.TotalSeconds;
                restores.Add(Stopwatch.GetTimestamp());
                committedAtRestore = Committed();
            }

            await WaitUntilAsync(() => brokerRestarted && verifierKilled).ConfigureAwait(false);
            var report = await run.WaitAsync(TimeSpan.FromMinutes(30), ct).ConfigureAwait(false);
            var wall = Stopwatch.GetElapsedTime(started);
            double[] afterRestore;
            lock (commitTimes)
            {
                // From each restore to the first token committed after it (none after the last, if the run ended first).
                afterRestore = [.. restores
                    .Select(r => (Restore: r, Next: commitTimes.FirstOrDefault(t => t > r)))
                    .Where(p => p.Next != 0)
                    .Select(p => Stopwatch.GetElapsedTime(p.Restore, p.Next).TotalMilliseconds)
                    .Order()];
            }

            return new FaultSoakResult
            {
                Reference = reference,
                Report = report,
                Committed = Committed(),
                Wall = wall,
                Cuts = link.Cuts,
                SecondsDown = secondsDown,
                BrokerRestarted = brokerRestarted,
                VerifierReplaced = verifierKilled,
                RestoreToTokenMillis = afterRestore,
            };
        }
        finally
        {
            await first.DisposeAsync().ConfigureAwait(false);
            if (replacement is not null)
            {
                await replacement.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// A long generation through Mosquitto (child process, persistence on) while the device's link is cut again and
/// again through the link emulator, the broker is restarted once and the verifier process is killed (SIGKILL) and
/// replaced by another. The text must equal the fault-free run's, token for token.
/// <para>
/// Sizes: by default a CI-sized run (2,000 tokens, 12 cuts of 0.2–1.5 s). <c>IOTDSD_SOAK=1</c> runs the full size
/// (2,000 tokens, 50 cuts of 1–10 s; several minutes per mode). <c>IOTDSD_SOAK_TOKENS</c>, <c>IOTDSD_SOAK_CUTS</c> and
/// <c>IOTDSD_SOAK_CUT_MS=MIN-MAX</c> override each size; <c>IOTDSD_SOAK_TOGETHER=1</c> restarts the broker and kills the
/// verifier at the same moment.
/// </para>
/// </summary>
public sealed class FaultSoakTests(ITestOutputHelper output)
{
    private sealed record Size(int Tokens, int Cuts, int CutMinMs, int CutMaxMs)
    {
        public static Size FromEnvironment()
        {
            var full = Environment.GetEnvironmentVariable("IOTDSD_SOAK") == "1";
            var size = full ? new Size(2000, 50, 1000, 10_000) : new Size(2000, 12, 200, 1500);
            if (int.TryParse(Environment.GetEnvironmentVariable("IOTDSD_SOAK_TOKENS"), CultureInfo.InvariantCulture, out var t))
            {
                size = size with { Tokens = t };
            }

            if (int.TryParse(Environment.GetEnvironmentVariable("IOTDSD_SOAK_CUTS"), CultureInfo.InvariantCulture, out var c))
            {
                size = size with { Cuts = c };
            }

            if (Environment.GetEnvironmentVariable("IOTDSD_SOAK_CUT_MS")?.Split('-') is [var lo, var hi])
            {
                size = size with { CutMinMs = int.Parse(lo, CultureInfo.InvariantCulture), CutMaxMs = int.Parse(hi, CultureInfo.InvariantCulture) };
            }

            return size;
        }
    }

    [Theory]
    [InlineData(DecodingMode.Greedy, 0f)]
    [InlineData(DecodingMode.Rsr, 0.8f)]
    public async Task CutsBrokerRestartVerifierKill_TextEqualsFaultFreeRun(DecodingMode mode, float temperature)
    {
        await using var mosquitto = await RestartableMosquitto.TryStart();
        if (mosquitto is null)
        {
            output.WriteLine("mosquitto not installed: skipped");
            return;
        }

        var size = Size.FromEnvironment();
        const string prompt = "The meaning of life is";
        var session = $"soak-{mode.Name()}";
        var settings = new SessionSettings { SessionId = session, Mode = mode, Sampling = new SamplingParams(temperature, 0, 1f), Seed = 77, MaxTokens = size.Tokens, Gamma = 4 };

        // The fault-free run: same settings, in-process broker and verifier, no faults.
        int[] reference;
        await using (var clean = await EmbeddedBroker.StartAsync())
        await using (var pipeline = await Pipeline.StartAsync(clean.Port))
        {
            reference = [.. (await pipeline.Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, CancellationToken.None)).Tokens];
        }

        if (mode == DecodingMode.Greedy)
        {
            Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", size.Tokens), reference);
        }

        var broker = $"127.0.0.1:{mosquitto.Port}";
        var verifierA = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "soak-a", "--target", TestEnvironment.TargetDir);
        await using var verifierB = new DeferredProcess();
        try
        {
            await using var link = new LinkEmulator(0, "127.0.0.1", mosquitto.Port);
            await link.StartAsync();
            var log = new ErrorLog();
            await using var worker = await FaultRig.StartDeviceAsync(link.Port, $"soak-device-{mode.Name()}", null, log, TimeSpan.FromSeconds(1.5));

            var committed = 0;
            var commitTimes = new List<long>();
            var started = Stopwatch.GetTimestamp();
            var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ =>
            {
                lock (commitTimes)
                {
                    commitTimes.Add(Stopwatch.GetTimestamp());
                    committed++;
                }
            }, CancellationToken.None);

            // Faults are placed by progress, so every one lands mid-generation however fast the machine is.
            var plan = new LinkChaos { Count = size.Cuts, CutMin = TimeSpan.FromMilliseconds(size.CutMinMs), CutMax = TimeSpan.FromMilliseconds(size.CutMaxMs), Seed = 2024 }.Plan();
            var restores = new List<long>();
            var brokerRestartAt = size.Tokens * 35 / 100;
            var verifierKillAt = Environment.GetEnvironmentVariable("IOTDSD_SOAK_TOGETHER") == "1" ? brokerRestartAt : size.Tokens * 65 / 100;
            bool brokerRestarted = false, verifierKilled = false;
            double cutSeconds = 0;
            int Committed()
            {
                lock (commitTimes)
                {
                    return committed;
                }
            }

            // Faults are checked while waiting for each milestone and again before each cut, so a device that runs
            // ahead of the milestones still meets them near the tokens they are planned for.
            async Task InjectDueFaultsAsync()
            {
                if (!brokerRestarted && Committed() >= brokerRestartAt)
                {
                    brokerRestarted = true;
                    await mosquitto.StopAsync();
                    await Task.Delay(500);
                    await mosquitto.StartAsync();
                    output.WriteLine($"broker restarted at token {Committed()}");
                }

                if (!verifierKilled && Committed() >= verifierKillAt)
                {
                    verifierKilled = true;
                    await verifierA.KillAsync();
                    verifierB.Process = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "soak-b", "--target", TestEnvironment.TargetDir);
                    output.WriteLine($"verifier soak-a killed at token {Committed()}, soak-b started");
                }
            }

            var committedAtRestore = -1;
            for (var i = 0; i < plan.Count && !run.IsCompleted; i++)
            {
                var milestone = (i + 1) * size.Tokens / (plan.Count + 2);
                while (Committed() < milestone && !run.IsCompleted)
                {
                    await Task.Delay(5);
                    await InjectDueFaultsAsync();
                }

                // A link is up for a while between outages: the device commits at least one token before the next cut.
                while (Committed() <= committedAtRestore && !run.IsCompleted)
                {
                    await Task.Delay(5);
                    await InjectDueFaultsAsync();
                }

                await InjectDueFaultsAsync();
                link.Cut();
                await Task.Delay(plan[i].Down);
                link.Restore();
                cutSeconds += plan[i].Down.TotalSeconds;
                restores.Add(Stopwatch.GetTimestamp());
                committedAtRestore = Committed();
            }

            while (!run.IsCompleted && !(brokerRestarted && verifierKilled))
            {
                await Task.Delay(5);
                await InjectDueFaultsAsync();
            }

            GenerationReport report;
            try
            {
                report = await run.WaitAsync(TimeSpan.FromMinutes(30));
            }
            catch (Exception ex) when (ex is GenerationException or TimeoutException)
            {
                foreach (var entry in log.Entries.TakeLast(80))
                {
                    output.WriteLine(entry);
                }

                throw;
            }

            var wall = Stopwatch.GetElapsedTime(started);
            Assert.Equal(reference.Length, report.Tokens.Count);
            Assert.Equal(reference, report.Tokens);
            Assert.Equal(size.Tokens, committed); // every token reported once: none lost, none duplicated

            var afterRestore = restores.Select(r =>
            {
                lock (commitTimes)
                {
                    var next = commitTimes.FirstOrDefault(t => t > r);
                    return next == 0 ? double.NaN : Stopwatch.GetElapsedTime(r, next).TotalMilliseconds;
                }
            }).Where(v => !double.IsNaN(v)).Order().ToArray();
            var f = report.Faults;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{mode.Name()}: {report.Tokens.Count} tokens in {wall.TotalSeconds:0.0} s; {link.Cuts} cuts ({cutSeconds:0.0} s down), broker restart {brokerRestarted}, verifier replaced {verifierKilled}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  rounds {report.Rounds}, retried requests {report.Retries}, reopens {report.Reopens}, link drops {f.LinkDrops}, dead links {f.DeadLinks}, unverified tokens shown {f.UnverifiedTokensShown}"));
            output.WriteLine($"  time at level (ms): {string.Join(", ", f.MillisAtLevel.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key}={kv.Value:0}")))}");
            output.WriteLine($"  failover (ms): {string.Join(", ", f.FailoverMillis.Select(v => v.ToString("0", CultureInfo.InvariantCulture)))}");
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  recovery, restore -> next token (ms): median {Median(afterRestore):0}, max {(afterRestore.Length == 0 ? 0 : afterRestore[^1]):0}, n={afterRestore.Length}"));
            var device = f.RecoveryMillis.Order().ToArray();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  recovery, reconnect -> next token (ms): median {Median(device):0}, max {(device.Length == 0 ? 0 : device[^1]):0}, n={device.Length}"));
            Assert.True(brokerRestarted && verifierKilled, "the generation ended before every fault was injected");
            Assert.True(link.Cuts >= Math.Min(size.Cuts, 1));
            Assert.True(f.FailoverMillis.Count >= 1 || report.Reopens >= 1, "the replacement verifier never took the session");
        }
        finally
        {
            await verifierA.DisposeAsync();
        }
    }

    private static double Median(double[] sorted) => sorted.Length == 0 ? 0 : sorted[sorted.Length / 2];

    /// <summary>A child process started later in the test, disposed with it.</summary>
    private sealed class DeferredProcess : IAsyncDisposable
    {
        public IotdsdProcess? Process { get; set; }

        public async ValueTask DisposeAsync()
        {
            if (Process is not null)
            {
                await Process.DisposeAsync();
            }
        }
    }
}

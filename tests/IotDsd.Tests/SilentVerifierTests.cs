using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// A verifier that hangs with its connection open (frozen here with SIGSTOP) keeps its retained status online until
/// the broker's keep-alive gives up on it, tens of seconds later, and its will delay after that. The device must
/// notice the silence on a live link and move the session to another verifier, losslessly, well before.
/// </summary>
public sealed class SilentVerifierTests(ITestOutputHelper output)
{
    [Fact]
    public async Task VerifierHangsWithItsConnectionOpen_DeviceLeavesTheSilentOne_TextEqualsReference()
    {
        await using var mosquitto = await RestartableMosquitto.TryStart();
        if (mosquitto is null)
        {
            output.WriteLine("mosquitto not installed: skipped");
            return;
        }

        const string prompt = "It was a dark and stormy night";
        const int tokens = 12_000; // long enough to outlast a verifier process starting (seconds)
        var settings = new SessionSettings { SessionId = "silent", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 5, MaxTokens = tokens, Gamma = 4 };
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        var broker = $"127.0.0.1:{mosquitto.Port}";
        await using var verifierA = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "silent-a", "--target", TestEnvironment.TargetDir);
        await using var watcher = await RawClient.ConnectAsync(mosquitto.Port, "silent-watch", "iotdsd/v1/verifiers/+/status");
        await watcher.WaitForAsync(m => m.Topic.EndsWith("silent-a/status", StringComparison.Ordinal) && Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));

        var log = new ErrorLog();
        await using var worker = await FaultRig.StartDeviceAsync(mosquitto.Port, "silent-device", null, log, TimeSpan.FromSeconds(1));
        var committed = 0;
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        while (Volatile.Read(ref committed) < 20 && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        // B joins after the session is placed on A, so only a move brings the session to B.
        await using var verifierB = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "silent-b", "--target", TestEnvironment.TargetDir);
        await watcher.WaitForAsync(m => m.Topic.EndsWith("silent-b/status", StringComparison.Ordinal) && Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));
        var faultAt = Volatile.Read(ref committed) + 50;
        while (Volatile.Read(ref committed) < faultAt && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        Assert.False(run.IsCompleted, "the generation ended before the fault");
        output.WriteLine($"fault at token {Volatile.Read(ref committed)}");
        await verifierA.SignalAsync("STOP");

        var report = await run.WaitAsync(TimeSpan.FromMinutes(2));
        await verifierA.KillAsync();
        Assert.Equal(reference, report.Tokens);
        Assert.Equal(tokens, Volatile.Read(ref committed));
        var moved = log.Entries.Where(e => e.Contains("silent for", StringComparison.Ordinal)).ToList();
        foreach (var e in log.Entries.Where(e => !e.StartsWith("Debug", StringComparison.Ordinal)).TakeLast(40))
        {
            output.WriteLine(e);
        }

        Assert.Contains(moved, e => e.Contains("silent-a", StringComparison.Ordinal) && e.Contains("silent-b", StringComparison.Ordinal));
        output.WriteLine($"failover (ms): {string.Join(", ", report.Faults.FailoverMillis.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
    }
}

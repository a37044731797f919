using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// A verifier process killed (SIGKILL) with <c>--will-delay-s 0</c>: the broker publishes its offline will at once,
/// and the device must move the session then, not when the round in flight times out (a minute here), losslessly.
/// </summary>
public sealed class VerifierOfflineTests(ITestOutputHelper output)
{
    [Fact]
    public async Task VerifierKilled_WillAtOnce_DeviceMovesWithoutWaitingForItsRequestTimeout()
    {
        await using var mosquitto = await RestartableMosquitto.TryStart();
        if (mosquitto is null)
        {
            output.WriteLine("mosquitto not installed: skipped");
            return;
        }

        const string prompt = "It was a dark and stormy night";
        const int tokens = 12_000;
        var settings = new SessionSettings { SessionId = "offline", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 5, MaxTokens = tokens, Gamma = 4 };
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);
        var broker = $"127.0.0.1:{mosquitto.Port}";
        await using var verifierA = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "gone-a", "--will-delay-s", "0", "--target", TestEnvironment.TargetDir);
        await using var watcher = await RawClient.ConnectAsync(mosquitto.Port, "offline-watch", "iotdsd/v1/verifiers/+/status");
        await watcher.WaitForAsync(m => m.Topic.EndsWith("gone-a/status", StringComparison.Ordinal) && Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));

        var log = new ErrorLog();
        await using var worker = await FaultRig.StartDeviceAsync(mosquitto.Port, "offline-device", null, log, TimeSpan.FromSeconds(60));
        var committed = 0;
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        while (Volatile.Read(ref committed) < 20 && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        // B joins after the session is placed on A, so only a move brings the session to B.
        await using var verifierB = IotdsdProcess.Start("verifier", "--broker", broker, "--id", "gone-b", "--target", TestEnvironment.TargetDir);
        await watcher.WaitForAsync(m => m.Topic.EndsWith("gone-b/status", StringComparison.Ordinal) && Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));
        var faultAt = Volatile.Read(ref committed) + 50;
        while (Volatile.Read(ref committed) < faultAt && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        Assert.False(run.IsCompleted, "the generation ended before the fault");
        await verifierA.KillAsync();

        // Waiting out the round in flight would take 60 s; the will says at once that nobody will answer it.
        var report = await run.WaitAsync(TimeSpan.FromSeconds(40));
        Assert.Equal(reference, report.Tokens);
        Assert.Equal(tokens, Volatile.Read(ref committed));
        Assert.Equal("gone-b", report.VerifierId);
        Assert.Equal(0L, report.Retries); // no request was waited out
        output.WriteLine($"failover (ms): {string.Join(", ", report.Faults.FailoverMillis.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
    }
}

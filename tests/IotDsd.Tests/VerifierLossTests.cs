using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// A device's verifier process is lost mid-generation while another verifier is live; the session must move to it,
/// losslessly, and soon.
/// <list type="bullet">
/// <item>Killed (SIGKILL) with <c>--will-delay-s 0</c>: the broker publishes the offline will at once, and the device
/// must move then, not when the round in flight times out.</item>
/// <item>Frozen (SIGSTOP) with its connection open: its status stays online until the broker's keep-alive gives up on
/// it, tens of seconds later, and its will delay after that. The device must notice the silence on a live link.</item>
/// </list>
/// </summary>
public sealed class VerifierLossTests(ITestOutputHelper output)
{
    private const string Prompt = "It was a dark and stormy night";
    private const int Tokens = 12_000; // long enough to outlast a verifier process starting (seconds)

    [SkippableFact]
    public async Task VerifierKilled_WillAtOnce_DeviceMovesWithoutWaitingForItsRequestTimeout()
    {
        // Waiting out the round in flight would take 60 s; the will says at once that nobody will answer it.
        var (report, _) = await LoseVerifierAsync("gone", ["--will-delay-s", "0"], TimeSpan.FromSeconds(60), a => a.KillAsync(), TimeSpan.FromSeconds(40));
        Assert.Equal("gone-b", report.VerifierId);
        Assert.Equal(0L, report.Retries); // no request was waited out
    }

    [SkippableFact]
    public async Task VerifierHangsWithItsConnectionOpen_DeviceLeavesTheSilentOne_TextEqualsReference()
    {
        var (_, log) = await LoseVerifierAsync("silent", [], TimeSpan.FromSeconds(1), a => a.SignalAsync("STOP"), TimeSpan.FromMinutes(2));
        var moved = log.Entries.Where(e => e.Contains("silent for", StringComparison.Ordinal)).ToList();
        foreach (var e in log.Entries.Where(e => !e.StartsWith("Debug", StringComparison.Ordinal)).TakeLast(40))
        {
            output.WriteLine(e);
        }

        Assert.Contains(moved, e => e.Contains("silent-a", StringComparison.Ordinal) && e.Contains("silent-b", StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task VerifierHangsDuringStreamedRounds_DeviceLeavesTheSilentOne_TextEqualsReference()
    {
        // At the verifier-decoding rung quiet streamed rounds count towards leaving a silent verifier like unanswered requests.
        var (_, log) = await LoseVerifierAsync(
            "streamsilent", [], TimeSpan.FromSeconds(1), a => a.SignalAsync("STOP"), TimeSpan.FromMinutes(2),
            // One token a streamed round keeps the generation slow enough that the committed prefix stays under the
            // verifier's prompt limit (8,192 tokens) while the second verifier process starts; 16 a round overran it.
            o => o with { PinnedLevel = DegradationLevel.VerifierDecoding, StreamTokens = 1 });
        var moved = log.Entries.Where(e => e.Contains("silent for", StringComparison.Ordinal)).ToList();
        Assert.Contains(log.Entries, e => e.Contains("Streamed round quiet", StringComparison.Ordinal));
        Assert.Contains(moved, e => e.Contains("streamsilent-a", StringComparison.Ordinal) && e.Contains("streamsilent-b", StringComparison.Ordinal));
    }

    /// <summary>
    /// Places a greedy session on verifier <c>{name}-a</c> (a process), starts <c>{name}-b</c> once it is placed (so only
    /// a move brings the session there), lets 50 more tokens commit, applies <paramref name="fault"/> to A, and waits
    /// at most <paramref name="waitAtMost"/> for the generation, whose text must equal the reference. Skips where
    /// Mosquitto is not installed.
    /// </summary>
    private async Task<(GenerationReport Report, ErrorLog Log)> LoseVerifierAsync(
        string name, string[] verifierArgs, TimeSpan requestTimeout, Func<IotdsdProcess, Task> fault, TimeSpan waitAtMost, Func<EdgeOptions, EdgeOptions>? device = null)
    {
        await using var mosquitto = await RestartableMosquitto.TryStart();

        var settings = new SessionSettings { SessionId = name, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 5, MaxTokens = Tokens, Gamma = 4 };
        var reference = Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(Prompt), SamplingParams.Greedy, 0, "ref", Tokens);
        var broker = $"127.0.0.1:{mosquitto.Port}";
        IotdsdProcess Verifier(string id) => IotdsdProcess.Start(["verifier", "--broker", broker, "--id", id, .. verifierArgs, "--target", TestEnvironment.TargetDir]);
        await using var watcher = await RawClient.ConnectAsync(mosquitto.Port, $"{name}-watch", "iotdsd/v1/verifiers/+/status");
        Task Online(string id) => watcher.WaitForAsync(m => m.Topic.EndsWith($"{id}/status", StringComparison.Ordinal) && Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));

        await using var verifierA = Verifier($"{name}-a");
        await Online($"{name}-a");
        var log = new ErrorLog();
        await using var worker = await FaultRig.StartDeviceAsync(mosquitto.Port, $"{name}-device", null, log, requestTimeout, device);
        var committed = 0;
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(Prompt), settings, _ => Interlocked.Increment(ref committed), CancellationToken.None);
        while (Volatile.Read(ref committed) < 20 && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        await using var verifierB = Verifier($"{name}-b");
        await Online($"{name}-b");
        var faultAt = Volatile.Read(ref committed) + 50;
        while (Volatile.Read(ref committed) < faultAt && !run.IsCompleted)
        {
            await Task.Delay(5);
        }

        Assert.False(run.IsCompleted, "the generation ended before the fault");
        output.WriteLine($"fault at token {Volatile.Read(ref committed)}");
        await fault(verifierA);

        var report = await run.WaitAsync(waitAtMost);
        await verifierA.KillAsync();
        Assert.Equal(reference, report.Tokens);
        Assert.Equal(Tokens, Volatile.Read(ref committed));
        output.WriteLine($"failover (ms): {string.Join(", ", report.Faults.FailoverMillis.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
        return (report, log);
    }
}

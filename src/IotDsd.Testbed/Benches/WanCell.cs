using System.Diagnostics;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The two device shapes Table A compares, both through the device's public options only, so the bench measures
/// whatever the device does by default. <see cref="Sequential"/> sets the device's sequential switch where it has one;
/// without one its default is the sequential shape, and <see cref="Distinct"/> says both columns run the same rounds.
/// </summary>
internal static class WanShapes
{
    /// <summary><c>--sequential</c>: one chain of γ, one round in flight, no adaptation.</summary>
    public static EdgeOptions Sequential(EdgeOptions options) => options with { Sequential = true };

    /// <summary>The device's default shape: the options as given.</summary>
    public static EdgeOptions Default(EdgeOptions options) => options;

    /// <summary>False when both shapes give the device the same options (then both columns measure the same rounds).</summary>
    public static bool Distinct
    {
        get
        {
            var probe = new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", 1) };
            return Sequential(probe) != Default(probe);
        }
    }
}

/// <summary>What one cell did: the device's report when the generation finished, else how far it got and why not.</summary>
internal sealed record WanCellOutcome
{
    public GenerationReport? Report { get; init; }

    /// <summary>Tokens committed (all of them when <see cref="Report"/> is set; those before the cut otherwise).</summary>
    public int Committed { get; init; }

    /// <summary>"ok", "cut" (the cell's time limit) or "failed" (the device failed closed).</summary>
    public required string Status { get; init; }

    /// <summary>The device's failure message, when it failed closed.</summary>
    public string? Error { get; init; }

    public TimeSpan Elapsed { get; init; }

    /// <summary>Bytes the link carried each way (MQTT frames included).</summary>
    public long LinkBytesUp { get; init; }

    public long LinkBytesDown { get; init; }

    /// <summary>How late the emulator delivered, on average, beyond its configured delay (both directions summed), ms.</summary>
    public double LateMs { get; init; }

    /// <summary>The degradation levels the device went through (from its report, or its level at the cut).</summary>
    public IReadOnlyList<string> Levels { get; init; } = [];
}

/// <summary>Runs one generation of a fresh device through a fresh link emulator in front of the broker.</summary>
internal static class WanCell
{
    public static async Task<WanCellOutcome> RunAsync(
        BrokerAddress broker, string verifierId, string deviceId, Func<EdgeOptions, EdgeOptions> options, EmulatedLink link,
        ILanguageModel draft, int[] prompt, SessionSettings settings, TimeSpan limit, CancellationToken ct)
    {
        await using var emulator = new LinkEmulator(new LinkEmulatorOptions { UpstreamHost = broker.Host, UpstreamPort = broker.Port, Up = link.Up, Down = link.Down });
        await emulator.StartAsync(ct).ConfigureAwait(false);
        var edge = options(new EdgeOptions { Broker = new BrokerAddress("127.0.0.1", emulator.Port), DeviceId = deviceId, VerifierId = verifierId });
        var worker = new DraftWorker(edge, draft, NullLogger.Instance);
        try
        {
            await worker.StartAsync(ct).ConfigureAwait(false);
            return await GenerateAsync(worker, emulator, prompt, settings, limit, ct).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                await worker.DisposeAsync().ConfigureAwait(false);
            }
            catch (MqttPublishException)
            {
                // The device's offline status could not be acknowledged in time: a cut cell leaves the link busy with
                // its last transfer. The next cell has a fresh device and link.
            }
        }
    }

    private static async Task<WanCellOutcome> GenerateAsync(DraftWorker worker, LinkEmulator emulator, int[] prompt, SessionSettings settings, TimeSpan limit, CancellationToken ct)
    {
        using var cut = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var committed = 0;
        var started = Stopwatch.GetTimestamp();
        var run = worker.GenerateAsync(prompt, settings, _ => Interlocked.Increment(ref committed), cut.Token);
        var finished = await Task.WhenAny(run, Task.Delay(limit, ct)).ConfigureAwait(false) == run;
        var level = worker.Level;
        if (!finished)
        {
            await cut.CancelAsync().ConfigureAwait(false);
        }

        try
        {
            var report = await run.ConfigureAwait(false);
            return new WanCellOutcome
            {
                Report = report,
                Committed = report.Tokens.Count,
                Status = "ok",
                Elapsed = report.Elapsed,
                LinkBytesUp = emulator.BytesUp,
                LinkBytesDown = emulator.BytesDown,
                LateMs = emulator.MeanLateMs.Up + emulator.MeanLateMs.Down,
                Levels = report.Faults.MillisAtLevel.Where(p => p.Value > 0).Select(p => p.Key).DefaultIfEmpty(DegradationLadder.Name(DegradationLevel.Normal)).ToList(),
            };
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Partial("cut", null);
        }
        catch (GenerationException ex)
        {
            return Partial("failed", ex.Message);
        }
        catch (MqttPublishException ex)
        {
            return Partial("failed", ex.Message);
        }

        WanCellOutcome Partial(string status, string? error) => new()
        {
            Committed = Volatile.Read(ref committed),
            Status = status,
            Error = error,
            Elapsed = Stopwatch.GetElapsedTime(started),
            LinkBytesUp = emulator.BytesUp,
            LinkBytesDown = emulator.BytesDown,
            LateMs = emulator.MeanLateMs.Up + emulator.MeanLateMs.Down,
            Levels = [DegradationLadder.Name(level)],
        };
    }
}

/// <summary>Both directions of an emulated link.</summary>
internal sealed record EmulatedLink(LinkProfile Up, LinkProfile Down)
{
    public static EmulatedLink Perfect { get; } = new(LinkProfile.Perfect, LinkProfile.Perfect);

    public static EmulatedLink Delay(double oneWayMs) =>
        new(new LinkProfile { Delay = TimeSpan.FromMilliseconds(oneWayMs) }, new LinkProfile { Delay = TimeSpan.FromMilliseconds(oneWayMs) });
}

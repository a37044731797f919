using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Testbed.Faults;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// A slow but live uplink: a dense (dsd) round takes longer to go up than the base publish and request timeouts. The
/// device measures its uplink and sizes each timeout to the payload, so the round is acknowledged instead of being
/// cancelled and resent forever, and the link is not declared dead.
/// </summary>
public sealed class SlowUplinkTests(ITestOutputHelper output)
{
    private const string Prompt = "The little robot";

    [Fact]
    public async Task DsdRoundsSlowerThanTheBaseTimeouts_Complete_SameTextAsUnconstrained()
    {
        // n-gram pair, V = 256: a γ = 4 dsd round carries four 1 KB rows, about 4.2 KB on the wire, so at 2,000 B/s it
        // takes about 2.1 s to go up: twice the device's 1 s publish and request timeouts.
        var settings = new SessionSettings { SessionId = "slow-up", Mode = DecodingMode.Dsd, Sampling = new SamplingParams(0.8f, 0, 1f), Seed = 11, Gamma = 4, MaxTokens = 12 };
        var prompt = TestEnvironment.Tokenizer.Encode(Prompt);
        var reference = await new FaultSoak(TestEnvironment.Draft, TestEnvironment.Target, TestEnvironment.TargetDir).ReferenceAsync(prompt, settings, CancellationToken.None);

        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "slow-v", log);
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        link.Configure(new LinkProfile { Delay = TimeSpan.FromMilliseconds(2), BytesPerSecond = 2_000 }, new LinkProfile { Delay = TimeSpan.FromMilliseconds(2) });
        await link.StartAsync();
        var timeout = TimeSpan.FromSeconds(1);
        await using var worker = await FaultRig.StartDeviceAsync(link.Port, "slow-device", "slow-v", log, timeout, o => o with { PublishTimeout = timeout, TransferTimeoutCap = TimeSpan.FromSeconds(20) });
        GenerationReport report;
        try
        {
            report = await worker.GenerateAsync(prompt, settings, null, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(40));
        }
        finally
        {
            foreach (var entry in log.Entries.Take(40))
            {
                output.WriteLine(entry);
            }
        }

        output.WriteLine($"rounds {report.Rounds}, retries {report.Retries}, dead links {report.Faults.DeadLinks}, link drops {report.Faults.LinkDrops}, uplink wire bytes {report.UplinkWireBytes}, measured uplink {worker.Connection!.UplinkBytesPerSecond:0} B/s");
        Assert.Equal(reference, report.Tokens);
        Assert.Equal(0, report.Faults.DeadLinks);
        await verifier.StopAsync(CancellationToken.None);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task DsdRoundThatCannotGoUpWithinTheCap_StepsDownOrFailsClosed(bool adaptInSampling)
    {
        // γ = 4 (about 4.2 KB) needs at least 1 s + 4.2 KB / 2,000 B/s × 3 ≈ 7.4 s, over the 5 s cap; γ = 1 fits.
        var settings = new SessionSettings { SessionId = "cap", Mode = DecodingMode.Dsd, Sampling = new SamplingParams(0.8f, 0, 1f), Seed = 11, Gamma = 4, MaxTokens = 12 };
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "cap-v", log);
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        link.Configure(new LinkProfile { Delay = TimeSpan.FromMilliseconds(2), BytesPerSecond = 2_000 }, new LinkProfile { Delay = TimeSpan.FromMilliseconds(2) });
        await link.StartAsync();
        var timeout = TimeSpan.FromSeconds(1);
        await using var worker = await FaultRig.StartDeviceAsync(
            link.Port, "cap-device", "cap-v", log, timeout, o => o with { PublishTimeout = timeout, TransferTimeoutCap = TimeSpan.FromSeconds(5), AdaptGammaInSampling = adaptInSampling });
        var run = worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(Prompt), settings, null, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(40));
        try
        {
            if (adaptInSampling)
            {
                // γ changed mid-generation: the text is an exact sample of the target, but not the one the seed names at γ = 4.
                var report = await run;
                Assert.Equal(settings.MaxTokens, report.Tokens.Count);
                // Stepped down: by the cap check, or already by the ladder after the first round's publish timed out.
                Assert.Contains(log.Entries, e => e.Contains("γ steps down", StringComparison.Ordinal) || e.Contains("normal -> reduced-gamma", StringComparison.Ordinal));
                Assert.Equal(0, report.Faults.DeadLinks);
            }
            else
            {
                var ex = await Assert.ThrowsAsync<GenerationException>(() => run);
                Assert.Contains("--adapt-in-sampling", ex.Message, StringComparison.Ordinal);
                output.WriteLine(ex.Message);
            }
        }
        finally
        {
            foreach (var entry in log.Entries.Take(40))
            {
                output.WriteLine(entry);
            }
        }

        await verifier.StopAsync(CancellationToken.None);
    }
}

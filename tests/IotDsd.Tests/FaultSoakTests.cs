using System.Globalization;
using IotDsd.Testbed.Faults;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
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

    [SkippableTheory]
    [InlineData(DecodingMode.Greedy, 0f)]
    [InlineData(DecodingMode.Rsr, 0.8f)]
    public async Task CutsBrokerRestartVerifierKill_TextEqualsFaultFreeRun(DecodingMode mode, float temperature)
    {
        await using var mosquitto = await RestartableMosquitto.TryStart();

        var size = Size.FromEnvironment();
        var prompt = TestEnvironment.Tokenizer.Encode("The meaning of life is");
        var settings = new SessionSettings { SessionId = $"soak-{mode.Name()}", Mode = mode, Sampling = new SamplingParams(temperature, 0, 1f), Seed = 77, MaxTokens = size.Tokens, Gamma = 4 };
        var plan = new FaultSoakPlan
        {
            Cuts = size.Cuts,
            CutMin = TimeSpan.FromMilliseconds(size.CutMinMs),
            CutMax = TimeSpan.FromMilliseconds(size.CutMaxMs),
            Together = Environment.GetEnvironmentVariable("IOTDSD_SOAK_TOGETHER") == "1",
        };
        var log = new ErrorLog();
        var soak = new FaultSoak(TestEnvironment.Draft, TestEnvironment.Target, TestEnvironment.TargetDir, log, output.WriteLine);
        FaultSoakResult result;
        try
        {
            result = await soak.RunAsync(mosquitto, prompt, settings, plan, $"soak-device-{mode.Name()}", CancellationToken.None);
        }
        catch (Exception ex) when (ex is GenerationException or TimeoutException)
        {
            foreach (var entry in log.Entries.TakeLast(80))
            {
                output.WriteLine(entry);
            }

            throw;
        }

        foreach (var line in result.Lines(mode.Name()))
        {
            output.WriteLine(line);
        }

        if (mode == DecodingMode.Greedy)
        {
            Assert.Equal(Autoregressive.Generate(TestEnvironment.Target, prompt, SamplingParams.Greedy, 0, "ref", size.Tokens), result.Reference);
        }

        Assert.Equal(result.Reference.Count, result.Report.Tokens.Count);
        Assert.Equal(result.Reference, result.Report.Tokens);
        Assert.Equal(size.Tokens, result.Committed); // every token reported once: none lost, none duplicated
        Assert.True(result.BrokerRestarted && result.VerifierReplaced, "the generation ended before every fault was injected");
        Assert.True(result.Cuts >= Math.Min(size.Cuts, 1));
        Assert.True(result.Report.Faults.FailoverMillis.Count >= 1 || result.Report.Reopens >= 1, "the replacement verifier never took the session");
    }
}

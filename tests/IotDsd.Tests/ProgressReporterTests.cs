using IotDsd.Testbed.Reporting;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// The progress lines every long command shares: announced at once, throttled to one line per interval, with the
/// fraction done and an estimate of the time left from the rate so far; and a real long command that uses it.
/// </summary>
public sealed class ProgressReporterTests
{
    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualTime : TimeProvider
    {
        public long Ticks { get; set; }

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Ticks;

        public void Advance(TimeSpan by) => Ticks += by.Ticks;
    }

    [Fact]
    public void Report_ThrottledToTheInterval_WithFractionAndTimeLeft()
    {
        var time = new ManualTime();
        var output = new StringWriter();
        var progress = new ProgressReporter("distill", output, time, TimeSpan.FromSeconds(5));

        progress.Start("sampling the target", 1000, "positions");
        time.Advance(TimeSpan.FromSeconds(2));
        progress.Report(100); // within the interval: silent
        time.Advance(TimeSpan.FromSeconds(8));
        progress.Report(250); // 10 s for 250: 30 s left at that rate
        time.Advance(TimeSpan.FromSeconds(1));
        progress.Report(300); // silent again
        time.Advance(TimeSpan.FromSeconds(80));
        progress.Report(500); // 91 s for 500: 91 s left
        progress.Done();

        var lines = output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(
            [
                "distill: sampling the target: 0/1000 positions (0%)",
                "distill: sampling the target: 250/1000 positions (25%), 10 s elapsed, about 30 s left",
                "distill: sampling the target: 500/1000 positions (50%), 1 min 31 s elapsed, about 1 min 31 s left",
                "distill: sampling the target: 500/1000 positions (50%), done in 1 min 31 s",
            ],
            lines);
    }

    [Fact]
    public void Advance_StepAndUncounted_ReadAsPlainLines()
    {
        var time = new ManualTime();
        var output = new StringWriter();
        var progress = new ProgressReporter("bench rtt", output, time, TimeSpan.FromSeconds(5));
        progress.Step("loading the models");
        progress.Start("rounds", 0, "tokens");
        time.Advance(TimeSpan.FromSeconds(6));
        progress.Advance();
        progress.Advance(); // silent: within the interval of the last line
        progress.Done();
        progress.Done(); // nothing open: nothing printed

        Assert.Equal(
            ["bench rtt: loading the models ...", "bench rtt: rounds: 0 tokens", "bench rtt: rounds: 1 tokens, 6 s elapsed", "bench rtt: rounds: 2 tokens, done in 6 s"],
            output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData(0.4, "0 s")]
    [InlineData(59, "59 s")]
    [InlineData(65, "1 min 05 s")]
    [InlineData(3725, "1 h 02 min")]
    public void Duration_ReadsAsMinutesAndHours(double seconds, string expected) =>
        Assert.Equal(expected, ProgressReporter.Duration(TimeSpan.FromSeconds(seconds)));

    [Fact]
    public async Task ModelsDistill_SaysWhatItDoesAndHowFarOnStderr()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-distill-").FullName;
        try
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "distill", "--target", TestEnvironment.TargetDir, "--out", dir,
                "--order", "2", "--sequences", "4", "--tokens", "16", "--batch", "2", "--held-out", "2");
            Assert.True(code == 0, stderr);
            Assert.Contains("wrote", stdout, StringComparison.Ordinal);
            Assert.Contains("distill: loading the target", stderr, StringComparison.Ordinal);
            Assert.Contains("distill: sampling 4 completions of 16 tokens from the target, 2 at a time, and counting 2-grams: 0/64 positions (0%)", stderr, StringComparison.Ordinal);
            Assert.Contains("distill: sampling 4 completions of 16 tokens from the target, 2 at a time, and counting 2-grams: 64/64 positions (100%), done in", stderr, StringComparison.Ordinal);
            Assert.Contains("distill: measuring the acceptance rate on 2 held-out completions: 32/32 positions (100%), done in", stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

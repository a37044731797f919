using IotDsd.Sim.Calibration;
using IotDsd.Sim.Engine;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Tests;

public sealed class CalibrationTests
{
    private static RunFacts Facts(string mode = "dssd") => new()
    {
        Source = "test",
        Mode = mode,
        Gamma = 2,
        Vocab = 300,
        PromptTokens = 5,
        Tokens = [10, 20, 30, 40, 50, 60, 70, 80],
        SessionId = "session-1",
        ElapsedMs = 40,
        UplinkPayloadBytes = 400,
        UplinkWireBytes = 900,
        DownlinkPayloadBytes = 300,
        DownlinkWireBytes = 500,
        MeanBatch = 1,
        RoundMillis = [5, 6, 7, 6],
        DraftMillis = [1, 1, 1, 1],
        VerifyMillis = [2, 2, 2, 2],
        AcceptedPerRound = [2, 1, 0, 2],
        DraftedPerRound = [2, 2, 2, 2],
    };

    [Fact]
    public void FromRun_AcceptanceByPosition_IsConditionalOnReachingThePosition()
    {
        var c = Calibrator.FromRun(Facts());

        // Position 1 reached 4 times, accepted 3; position 2 reached 3 times, accepted 2.
        Assert.Equal([0.75, 0.6667], c.AcceptanceByPosition);
        Assert.Equal(0.5, c.DraftMsPerToken, 6); // 4 ms over 8 drafted tokens
        Assert.Equal(2, c.VerifyMs, 6);
        Assert.Equal(3, c.BrokerOverheadMs, 6); // mean(5, 6, 7, 6) - 1 - 2
        Assert.Equal(100, c.UplinkFramingBytes); // 500 bytes over 5 messages
        Assert.Equal(200, c.Measured.TokensPerSecond, 6);
        Assert.Equal(50, c.TypicalTokenId);
    }

    [Fact]
    public void Calibration_SavedAndLoaded_DrivesTheSimulator()
    {
        var path = Path.Combine(Path.GetTempPath(), $"iotdsd-cal-{Environment.ProcessId}.json");
        try
        {
            File.WriteAllText(path, Calibrator.FromRun(Facts()).ToJson());
            var loaded = Calibration.Calibration.Load(path);
            var scenario = Calibrator.ToScenario(loaded);
            Assert.Equal(SimMode.Dssd, scenario.Mode);
            Assert.Equal(0.75, scenario.Acceptance.ByPosition[0]);
            Assert.Equal(1.5, scenario.BrokerHopMs, 6); // half the overhead each way
            var result = Simulator.Run(scenario);
            Assert.Equal(8, result.Tokens);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("{")]
    [InlineData("{\"format\": 1, \"gamma\": 0}")]
    [InlineData("{\"format\": 2, \"gamma\": 4, \"vocab\": 10, \"acceptance_by_position\": [0.5]}")]
    [InlineData("{\"format\": 1, \"gamma\": 4, \"vocab\": 10, \"acceptance_by_position\": [0.5], \"typo\": 1}")]
    public void Load_BadFile_FormatExceptionWithReason(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iotdsd-badcal-{Environment.ProcessId}-{text.Length}.json");
        try
        {
            File.WriteAllText(path, text);
            var ex = Assert.Throws<FormatException>(() => Calibration.Calibration.Load(path));
            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void FromRun_NoRounds_Refused() =>
        Assert.Throws<ArgumentException>(() => Calibrator.FromRun(Facts() with { AcceptedPerRound = [], DraftedPerRound = [], RoundMillis = [] }));

    [Fact]
    public void ScenarioFile_Parse_ReadsSnakeCaseAndRefusesTyposAndBadValues()
    {
        var s = ScenarioFile.Parse("""{ "mode": "cloud-sd", "gamma": 6, "link": { "rtt_ms": 35, "up_mbps": 2 }, "acceptance": { "by_position": [0.9, 0.8] } }""");
        Assert.Equal(SimMode.CloudSd, s.Mode);
        Assert.Equal(6, s.Gamma);
        Assert.Equal(35, s.Link.RttMs);
        Assert.Equal(2, s.Link.UpMbps);
        Assert.Equal(ScenarioFile.ToJson(s), ScenarioFile.ToJson(ScenarioFile.Parse(ScenarioFile.ToJson(s))));
        Assert.Contains("rtt_msec", Assert.Throws<FormatException>(() => ScenarioFile.Parse("""{ "link": { "rtt_msec": 3 } }""")).Message, StringComparison.Ordinal);
        Assert.Contains("mode must be one of", Assert.Throws<FormatException>(() => ScenarioFile.Parse("""{ "mode": "fast" }""")).Message, StringComparison.Ordinal);
        Assert.Contains("gamma", Assert.Throws<FormatException>(() => ScenarioFile.Parse("""{ "gamma": 0 }""")).Message, StringComparison.Ordinal);
    }
}

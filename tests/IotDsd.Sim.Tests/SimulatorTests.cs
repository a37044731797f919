using IotDsd.Sim.Engine;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Tests;

public sealed class SimulatorTests
{
    private static readonly Scenario Plain = new()
    {
        Mode = SimMode.Greedy,
        Gamma = 4,
        Vocab = 1000,
        TokensPerRequest = 2000,
        RequestsPerDevice = 20,
        BrokerHopMs = 0,
        UplinkFramingBytes = 0,
        DownlinkFramingBytes = 0,
        Device = new DeviceProfile { DraftMsPerToken = 1 },
        Link = new LinkProfile { RttMs = 10, UpMbps = 1e6, DownMbps = 1e6 },
        Verifier = new VerifierProfile { FixedMs = 5, PerSequenceMs = 0, PerTokenMs = 0, BatchWaitMs = 0 },
        Acceptance = new AcceptanceProfile { ByPosition = [0.7] },
    };

    [Fact]
    public void Run_SameSeed_SameResult()
    {
        var a = Simulator.Run(Plain with { Link = Plain.Link with { JitterMs = 3, Loss = 0.01 } });
        var b = Simulator.Run(Plain with { Link = Plain.Link with { JitterMs = 3, Loss = 0.01 } });
        Assert.Equal(a with { WallMs = 0 }, b with { WallMs = 0 });
        var c = Simulator.Run(Plain with { Seed = 99, Link = Plain.Link with { JitterMs = 3, Loss = 0.01 } });
        Assert.NotEqual(a.Rounds, c.Rounds);
    }

    [Fact]
    public void Run_ConstantAcceptance_TokensPerRoundMatchesTheFormula()
    {
        var r = Simulator.Run(Plain);
        var alpha = 0.7;
        var expected = (1 - Math.Pow(alpha, 5)) / (1 - alpha); // docs/protocol.md §2, γ = 4
        Assert.InRange(r.TokensPerRound, expected * 0.98, expected * 1.02);

        // Each round: draft 4 ms + RTT 10 ms + verify 5 ms; plus the open round trip per request.
        var expectedMs = ((4 * 1.0) + 10 + 5) / expected;
        Assert.InRange(r.TimePerTokenMs, expectedMs * 0.97, expectedMs * 1.05);
    }

    [Fact]
    public void Run_LongerRtt_SlowsDistributedModesButNotCloudThroughputMuch()
    {
        var near = Plain with { Mode = SimMode.Rsr, Link = Plain.Link with { RttMs = 5 } };
        var far = Plain with { Mode = SimMode.Rsr, Link = Plain.Link with { RttMs = 100 } };
        Assert.True(Simulator.Run(far).TokensPerSecond < Simulator.Run(near).TokensPerSecond / 3);
        var cloudNear = Simulator.Run(near with { Mode = SimMode.Cloud });
        var cloudFar = Simulator.Run(far with { Mode = SimMode.Cloud });
        Assert.InRange(cloudFar.TokensPerSecond, cloudNear.TokensPerSecond * 0.9, cloudNear.TokensPerSecond * 1.01);
    }

    [Fact]
    public void Run_Modes_BytesPerTokenOrderedAsTheProtocolSays()
    {
        var s = Plain with { Vocab = 32_000, TokensPerRequest = 400, RequestsPerDevice = 5 };
        var dsd = Simulator.Run(s with { Mode = SimMode.Dsd });
        var dssd = Simulator.Run(s with { Mode = SimMode.Dssd });
        var rsr = Simulator.Run(s with { Mode = SimMode.Rsr });
        var greedy = Simulator.Run(s with { Mode = SimMode.Greedy });
        Assert.True(dsd.UplinkBytesPerToken > 4 * 32_000); // full draft rows up
        Assert.True(dssd.UplinkBytesPerToken < 100 && dssd.DownlinkBytesPerToken > 10_000); // the target row down on rejections
        Assert.True(rsr.DownlinkBytesPerToken < 100);
        Assert.True(greedy.UplinkBytesPerToken < rsr.UplinkBytesPerToken);
    }

    [Fact]
    public void Run_NarrowLink_DsdPaysForItsUplink()
    {
        var narrow = Plain with { Vocab = 32_000, Mode = SimMode.Dsd, TokensPerRequest = 200, RequestsPerDevice = 3, Link = Plain.Link with { UpMbps = 10, DownMbps = 10 } };
        var dsd = Simulator.Run(narrow);
        var rsr = Simulator.Run(narrow with { Mode = SimMode.Rsr });

        // 4 rows of 128 KB at 10 Mbps is over 400 ms a round.
        Assert.True(dsd.TimePerTokenMs > 100);
        Assert.True(rsr.TimePerTokenMs < 10);
    }

    [Fact]
    public void Run_AdaptiveGamma_OnANarrowLinkDraftsLessAndIsNotSlower()
    {
        var s = Plain with { Vocab = 32_000, Mode = SimMode.Dsd, Gamma = 8, TokensPerRequest = 300, RequestsPerDevice = 5, Link = Plain.Link with { UpMbps = 20, DownMbps = 20 } };
        var fixedGamma = Simulator.Run(s);
        var adaptive = Simulator.Run(s with { AdaptiveGamma = true });
        Assert.True(adaptive.MeanGamma < 4, $"mean γ {adaptive.MeanGamma}");
        Assert.True(adaptive.TokensPerSecond > fixedGamma.TokensPerSecond);
    }

    [Fact]
    public void Run_Pipelining_HidesDraftTimeWhenDraftsAreAccepted()
    {
        // Drafting (32 ms) overlaps a 60 ms round trip: a hit starts the next round with its draft already done.
        var s = Plain with { Link = Plain.Link with { RttMs = 60 }, Device = new DeviceProfile { DraftMsPerToken = 8 }, Acceptance = new AcceptanceProfile { ByPosition = [0.9], BonusGuess = 0.8 } };
        var plain = Simulator.Run(s);
        var pipelined = Simulator.Run(s with { Pipelining = true });
        Assert.True(pipelined.PipelineHits > 0);
        Assert.True(pipelined.TokensPerSecond > plain.TokensPerSecond * 1.1);
    }

    [Fact]
    public void Run_MoreDevices_FleetThroughputGrowsThenSaturatesWithBatching()
    {
        var s = Plain with { Mode = SimMode.Rsr, TokensPerRequest = 200, RequestsPerDevice = 2, Verifier = Plain.Verifier with { FixedMs = 20, PerTokenMs = 0.5, MaxBatch = 16, BatchWaitMs = 1 } };
        var one = Simulator.Run(s with { Devices = 1 });
        var sixteen = Simulator.Run(s with { Devices = 16 });
        var many = Simulator.Run(s with { Devices = 256 });
        Assert.True(sixteen.FleetTokensPerSecond > 5 * one.FleetTokensPerSecond);
        Assert.InRange(many.MeanBatch, 8, 16);
        Assert.True(many.VerifierUtilisation > 0.9);
        Assert.True(many.TokensPerSecond < sixteen.TokensPerSecond); // each device waits its turn
    }

    [Fact]
    public void Run_OutagesAndLoss_CostTime()
    {
        var clean = Simulator.Run(Plain);
        var outages = Simulator.Run(Plain with { Link = Plain.Link with { OutageEveryS = 2, OutageS = 0.5, ReconnectMs = 100 } });
        var lossy = Simulator.Run(Plain with { Link = Plain.Link with { Loss = 0.05 } });
        Assert.True(outages.TimePerTokenMs > clean.TimePerTokenMs * 1.2);
        Assert.True(lossy.TimePerTokenMs > clean.TimePerTokenMs * 1.2);
    }

    [Fact]
    public void Run_CloudSd_UsesTheCloudDraftAndNoUplinkPerRound()
    {
        var r = Simulator.Run(Plain with { Mode = SimMode.CloudSd });
        Assert.True(r.UplinkBytesPerToken < 1); // one request per generation, nothing per round
        Assert.InRange(r.TokensPerRound, 2.6, 2.9);
    }

    [Fact]
    public void Run_InvalidScenario_Refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => Simulator.Run(Plain with { Link = Plain.Link with { UpMbps = 0 } }));
        Assert.Contains("bandwidth", ex.Message, StringComparison.Ordinal);
    }
}

using System.Xml.Linq;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Sim.Plots;
using IotDsd.Sim.Reproductions;
using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Tests;

public sealed class ReproductionTests
{
    [Fact]
    public void DssdTable_Rows_CoverThePapersGridAndAddOnlyTheEnvelope()
    {
        var rows = DssdTable.Rows();
        Assert.Equal(6, rows.Count);
        Assert.Equal([(32_000, 3), (32_000, 5), (32_000, 10), (128_000, 3), (128_000, 5), (128_000, 10)], rows.Select(r => (r.Vocab, r.Gamma)));
        foreach (var r in rows)
        {
            // The dense terms are exactly the paper's; what is left is our envelope and per-message fields.
            Assert.InRange(r.DsdUplinkBytes - r.PaperDsdUplinkBytes, 1, 80);
            Assert.InRange(r.DssdDownlinkBytes - r.PaperDssdDownlinkBytes, 1, 60);
            Assert.True(r.DssdUplinkBytes < 200);
            Assert.True(r.RsrDownlinkBytes < 100);
        }

        Assert.Equal(rows[0].DssdUplinkBytes, rows[3].DssdUplinkBytes); // DSSD's uplink does not grow with V
    }

    [Fact]
    public void MessageSizes_RoundUp_IsTheEncodedLengthOfTheRealMessage()
    {
        var scenario = new Scenario { Mode = SimMode.Rsr, Vocab = 500, SessionIdLength = 5, TypicalTokenId = 7, TokensPerRequest = 30, PromptTokens = 3 };
        var sizes = new MessageSizes(scenario);
        var real = WireCodec.Encode(new DraftRound
        {
            SessionId = "abcde",
            Epoch = 1,
            Round = 10,
            CommittedLength = 18,
            PrefixDigest = ulong.MaxValue - 5,
            Pending = [7],
            Draft = [7, 7, 7],
            DraftProbs = [0.5f, 0.25f, 0.125f],
            Proposals = 4,
        }).Length;
        Assert.Equal(real, sizes.RoundUp(3, first: false));
        Assert.Equal(real + 2, sizes.RoundUp(3, first: true)); // the prompt's two more tokens
    }

    [Fact]
    public void SvgChart_Lines_IsWellFormedAndNamesEverySeries()
    {
        var svg = SvgChart.Lines("t <&>", "x", "y", [new Series("rsr", [(0, 1), (10, 2)]), new Series("dsd", [(0, 3), (10, 40)])], logY: true);
        var doc = XDocument.Parse(svg);
        Assert.Equal("svg", doc.Root!.Name.LocalName);
        Assert.Contains("rsr", svg, StringComparison.Ordinal);
        Assert.Contains("dsd", svg, StringComparison.Ordinal);
        XDocument.Parse(SvgChart.Bars("b", "y", ["a", "b"], [new Series("up", [(0, 5), (1, 50)])], logY: true));
    }

    [Fact]
    public void SimPlots_Write_WritesTheThreePictures()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"iotdsd-plots-{Environment.ProcessId}");
        try
        {
            var small = Baseline.Scenario with { TokensPerRequest = 40, RequestsPerDevice = 1 };
            var files = SimPlots.Write(dir, Sweeps.Rtt(small), Sweeps.Fleet(small with { }).Where(r => r.Devices <= 8).ToList());
            Assert.Contains(files, f => f.EndsWith("time-per-token-vs-rtt.svg", StringComparison.Ordinal));
            Assert.Contains(files, f => f.EndsWith("bytes-per-token.svg", StringComparison.Ordinal));
            Assert.Contains(files, f => f.EndsWith("capacity-vs-devices.svg", StringComparison.Ordinal));
            foreach (var f in files)
            {
                XDocument.Load(f);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

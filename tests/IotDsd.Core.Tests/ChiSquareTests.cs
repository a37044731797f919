using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

/// <summary>The statistics the losslessness tests rest on, checked against textbook values.</summary>
public sealed class ChiSquareTests
{
    [Theory]
    [InlineData(3.841458820694124, 1, 0.05)]
    [InlineData(6.634896601021214, 1, 0.01)]
    [InlineData(5.991464547107979, 2, 0.05)]
    [InlineData(18.307038053275146, 10, 0.05)]
    [InlineData(124.34211340400407, 100, 0.05)]
    [InlineData(149.44918252128566, 100, 0.001)]
    [InlineData(2, 2, 0.36787944117144233)]
    public void Survival_CriticalValues_MatchTables(double x, int df, double p)
    {
        Assert.Equal(p, ChiSquare.Survival(x, df), p * 1e-3);
    }

    [Theory]
    [InlineData(4, 3.0)]
    [InlineData(40, 35.5)]
    [InlineData(200, 254.3)]
    [InlineData(200, 150.0)]
    [InlineData(370, 500.0)]
    public void Survival_EvenDegrees_MatchesClosedForm(int df, double x)
    {
        // For df = 2k: Q = e^(−x/2) Σ_{i<k} (x/2)^i / i!, summed in log space.
        var half = x / 2;
        double sum = 0;
        for (var i = 0; i < df / 2; i++)
        {
            sum += Math.Exp((i * Math.Log(half)) - half - ChiSquare.LogGamma(i + 1));
        }

        Assert.Equal(sum, ChiSquare.Survival(x, df), Math.Max(sum * 1e-9, 1e-300));
    }

    [Fact]
    public void LogGamma_IntegersAndHalf_MatchFactorials()
    {
        Assert.Equal(Math.Log(24), ChiSquare.LogGamma(5), 1e-12);
        Assert.Equal(0.5 * Math.Log(Math.PI), ChiSquare.LogGamma(0.5), 1e-12);
        Assert.Equal(0, ChiSquare.LogGamma(1), 1e-12);
    }

    [Fact]
    public void GoodnessOfFit_ExactCounts_StatisticZero()
    {
        var result = ChiSquare.GoodnessOfFit([250, 250, 500], [0.25, 0.25, 0.5]);
        Assert.Equal(0, result.Statistic, 1e-12);
        Assert.Equal(1.0, result.PValue, 1e-12);
        Assert.Equal(2, result.DegreesOfFreedom);
    }

    [Fact]
    public void GoodnessOfFit_SmallExpectedCells_Pooled()
    {
        // Expected 1, 1, 1, 1, 996: the four small cells pool into one of 4 (still < 5, so it joins the last).
        var result = ChiSquare.GoodnessOfFit([1, 1, 1, 1, 996], [0.001, 0.001, 0.001, 0.001, 0.996]);
        Assert.Equal(1, result.Cells);
        var pooled = ChiSquare.GoodnessOfFit([3, 3, 3, 3, 988], [0.003, 0.003, 0.003, 0.003, 0.988]);
        Assert.Equal(3, pooled.Cells); // 3+3 → 6, 3+3 → 6, 988
    }

    [Fact]
    public void GoodnessOfFit_ObservationInZeroProbabilityCell_PValueZero()
    {
        var result = ChiSquare.GoodnessOfFit([500, 499, 1], [0.5, 0.5, 0]);
        Assert.Equal(1, result.Impossible);
        Assert.Equal(0, result.PValue);
    }

    [Fact]
    public void GoodnessOfFit_BiasedCoin_Rejected()
    {
        var result = ChiSquare.GoodnessOfFit([52_000, 48_000], [0.5, 0.5]);
        Assert.Equal(160, result.Statistic, 1e-9);
        Assert.True(result.PValue < 1e-30);
    }
}

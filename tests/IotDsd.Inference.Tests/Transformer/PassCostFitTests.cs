using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>The pass-cost split that <c>iotdsd bench models</c> prints: a least-squares fit of fixed, per-session and per-token parts.</summary>
public sealed class PassCostFitTests
{
    [Fact]
    public void Fit_ExactPoints_RecoversTheThreeParts()
    {
        var points = new List<ModelBenchmark.PassPoint>();
        foreach (var n in new[] { 1, 4, 16 })
        {
            foreach (var k in new[] { 1, 3, 5 })
            {
                points.Add(new ModelBenchmark.PassPoint(n, k, 25.0 + (2.0 * n) + (3.25 * n * k)));
            }
        }

        var fit = ModelBenchmark.Fit(points);
        Assert.Equal(25.0, fit.FixedMillis, 6);
        Assert.Equal(2.0, fit.PerSessionMillis, 6);
        Assert.Equal(3.25, fit.PerTokenMillis, 6);
        Assert.Equal(25.0 / 3.25, fit.MemoryBoundTokens, 6);
        Assert.Equal(25.0 + 8 + (3.25 * 20), fit.Millis(4, 20), 6);
    }

    [Fact]
    public void Fit_NoisyPoints_StaysNearTheTruth()
    {
        var random = new Random(11);
        var points = new List<ModelBenchmark.PassPoint>();
        for (int i = 0; i < 200; i++)
        {
            int n = 1 + random.Next(32), k = 1 + random.Next(9);
            points.Add(new ModelBenchmark.PassPoint(n, k, 10.0 + (0.5 * n) + (0.02 * n * k) + ((random.NextDouble() - 0.5) * 0.2)));
        }

        var fit = ModelBenchmark.Fit(points);
        Assert.InRange(fit.FixedMillis, 9.95, 10.05);
        Assert.InRange(fit.PerSessionMillis, 0.49, 0.51);
        Assert.InRange(fit.PerTokenMillis, 0.018, 0.022);
    }

    [Fact]
    public void Fit_OneTokenCountOnly_CannotSeparateSessionsFromTokens()
    {
        var points = new[] { new ModelBenchmark.PassPoint(1, 1, 30), new ModelBenchmark.PassPoint(4, 1, 45), new ModelBenchmark.PassPoint(16, 1, 100) };
        var error = Assert.Throws<ArgumentException>(() => ModelBenchmark.Fit(points));
        Assert.Contains("two token counts", error.Message, StringComparison.Ordinal);
    }
}

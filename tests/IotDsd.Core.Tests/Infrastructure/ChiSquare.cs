namespace IotDsd.Core.Tests.Infrastructure;

/// <summary>The outcome of a chi-square goodness-of-fit test.</summary>
internal readonly record struct ChiSquareResult(double Statistic, int DegreesOfFreedom, double PValue, long Impossible, int Cells)
{
    public override string ToString() =>
        $"chi2={Statistic:F2} df={DegreesOfFreedom} p={PValue:G4} cells={Cells} impossible={Impossible}";
}

/// <summary>Pearson's chi-square goodness of fit, with its own regularized incomplete gamma (no packages).</summary>
internal static class ChiSquare
{
    /// <summary>
    /// Tests <paramref name="observed"/> counts against <paramref name="probabilities"/>. Cells with expected count
    /// below 5 are pooled (smallest first) until every pooled cell reaches 5. Observations in zero-probability cells
    /// are counted as <see cref="ChiSquareResult.Impossible"/> and force p = 0.
    /// </summary>
    public static ChiSquareResult GoodnessOfFit(IReadOnlyList<long> observed, IReadOnlyList<double> probabilities)
    {
        if (observed.Count != probabilities.Count)
        {
            throw new ArgumentException("observed and probabilities differ in length");
        }

        long n = 0;
        foreach (var o in observed)
        {
            n += o;
        }

        long impossible = 0;
        var cells = new List<(double Expected, long Observed)>();
        for (var i = 0; i < observed.Count; i++)
        {
            if (probabilities[i] <= 1e-15)
            {
                impossible += observed[i];
                continue;
            }

            cells.Add((probabilities[i] * n, observed[i]));
        }

        cells.Sort((a, b) => a.Expected.CompareTo(b.Expected));
        var merged = new List<(double Expected, long Observed)>();
        double poolE = 0;
        long poolO = 0;
        foreach (var (e, o) in cells)
        {
            if (e >= 5 && poolE == 0)
            {
                merged.Add((e, o));
                continue;
            }

            poolE += e;
            poolO += o;
            if (poolE >= 5)
            {
                merged.Add((poolE, poolO));
                poolE = 0;
                poolO = 0;
            }
        }

        if (poolE > 0)
        {
            if (merged.Count == 0)
            {
                merged.Add((poolE, poolO));
            }
            else
            {
                var last = merged[^1];
                merged[^1] = (last.Expected + poolE, last.Observed + poolO);
            }
        }

        double statistic = 0;
        foreach (var (e, o) in merged)
        {
            var d = o - e;
            statistic += d * d / e;
        }

        var df = Math.Max(1, merged.Count - 1);
        var p = impossible > 0 ? 0.0 : Survival(statistic, df);
        return new ChiSquareResult(statistic, df, p, impossible, merged.Count);
    }

    /// <summary>P(X ≥ x) for X ~ chi-square with <paramref name="df"/> degrees of freedom.</summary>
    public static double Survival(double x, int df) => x <= 0 ? 1.0 : UpperRegularizedGamma(df / 2.0, x / 2.0);

    /// <summary>Q(a, x) = Γ(a, x) / Γ(a): series for x &lt; a + 1, continued fraction otherwise (Numerical Recipes §6.2).</summary>
    public static double UpperRegularizedGamma(double a, double x)
    {
        if (x < 0 || a <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(x));
        }

        if (x == 0)
        {
            return 1.0;
        }

        var logPrefix = (a * Math.Log(x)) - x - LogGamma(a);
        if (x < a + 1)
        {
            double sum = 1.0 / a, term = sum, ap = a;
            for (var n = 0; n < 10_000; n++)
            {
                ap += 1;
                term *= x / ap;
                sum += term;
                if (Math.Abs(term) < Math.Abs(sum) * 1e-16)
                {
                    break;
                }
            }

            return Math.Max(0.0, 1.0 - (sum * Math.Exp(logPrefix)));
        }

        const double tiny = 1e-300;
        var b = x + 1 - a;
        var c = 1 / tiny;
        var d = 1 / b;
        var h = d;
        for (var i = 1; i < 10_000; i++)
        {
            var an = -i * (i - a);
            b += 2;
            d = (an * d) + b;
            if (Math.Abs(d) < tiny)
            {
                d = tiny;
            }

            c = b + (an / c);
            if (Math.Abs(c) < tiny)
            {
                c = tiny;
            }

            d = 1 / d;
            var delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-16)
            {
                break;
            }
        }

        return Math.Exp(logPrefix) * h;
    }

    /// <summary>ln Γ(x), Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x &gt; 0.</summary>
    public static double LogGamma(double x)
    {
        double[] g =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        if (x < 0.5)
        {
            return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        }

        x -= 1;
        var a = g[0];
        var t = x + 7.5;
        for (var i = 1; i < 9; i++)
        {
            a += g[i] / (x + i);
        }

        return (0.5 * Math.Log(2 * Math.PI)) + ((x + 0.5) * Math.Log(t)) - t + Math.Log(a);
    }
}

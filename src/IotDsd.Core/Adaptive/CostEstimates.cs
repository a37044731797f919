namespace IotDsd.Core.Adaptive;

/// <summary>A least-squares line y = a + b·x over decayed sums, never sloping down and never below zero.</summary>
internal sealed class DecayedLine(double decay)
{
    private double _w, _x, _y, _xx, _xy;

    public bool Empty => _w <= 0;

    public void Add(double x, double y)
    {
        _w = (_w * decay) + 1;
        _x = (_x * decay) + x;
        _y = (_y * decay) + y;
        _xx = (_xx * decay) + (x * x);
        _xy = (_xy * decay) + (x * y);
    }

    /// <summary>Intercept and slope (a, b), both at least 0: where the points do not rise with x, or the line would cross
    /// below zero at x = 0, the line through the origin and the means. (0, 0) when empty.</summary>
    public (double A, double B) Fit()
    {
        if (_w <= 0)
        {
            return (0, 0);
        }

        var (meanX, mean, slope) = Moments();
        var intercept = mean - (slope * meanX);
        return slope > 0 && intercept >= 0 ? (intercept, slope) : meanX > 0 ? (0, mean / meanX) : (mean, 0);
    }

    /// <summary>The fitted value at <paramref name="x"/>. While only one x has been seen there is no slope to fit, and
    /// where the points slope down (noise: costs do not fall with size) none worth using: then below the mean x the mean,
    /// above it the mean scaled in proportion (a larger round is assumed to cost in proportion to its size until a
    /// rising line says otherwise), so an unmeasured shape never looks cheaper than it may be.</summary>
    public double At(double x)
    {
        if (_w <= 0)
        {
            return 0;
        }

        var (meanX, mean, slope) = Moments();
        if (slope <= 0)
        {
            return x <= meanX || meanX <= 0 ? mean : mean * x / meanX;
        }

        return Math.Max(0, mean + (slope * (x - meanX)));
    }

    /// <summary>The means of x and y and the least-squares slope (0 while only one x has been seen); not when empty.</summary>
    private (double MeanX, double MeanY, double Slope) Moments()
    {
        var mean = _y / _w;
        var meanX = _x / _w;
        var varX = (_xx / _w) - (meanX * meanX);
        return (meanX, mean, varX < 1e-9 ? 0 : ((_xy / _w) - (meanX * mean)) / varX);
    }
}

/// <summary>
/// The median of the last few samples: the round-trip estimate. It ignores a single outlier and follows a step in the
/// link within half its window (<see cref="Window"/> = 7: four rounds after a step, the median is on the new side).
/// </summary>
internal sealed class RecentMedian
{
    public const int Window = 7;
    private readonly double[] _ring = new double[Window];
    private int _count;
    private int _next;

    public int Count => _count;

    public void Add(double value)
    {
        _ring[_next] = value;
        _next = (_next + 1) % Window;
        _count = Math.Min(_count + 1, Window);
    }

    public double Value
    {
        get
        {
            if (_count == 0)
            {
                return 0;
            }

            Span<double> sorted = stackalloc double[Window];
            _ring.AsSpan(0, _count).CopyTo(sorted);
            sorted = sorted[.._count];
            sorted.Sort();
            return _count % 2 == 1 ? sorted[_count / 2] : (sorted[(_count / 2) - 1] + sorted[_count / 2]) / 2;
        }
    }
}

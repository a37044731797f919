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

    /// <summary>The fitted value at <paramref name="x"/>. While only one x has been seen there is no slope to fit: below
    /// it the mean, above it the mean scaled in proportion (a larger round is assumed to cost in proportion to its size
    /// until one has been measured), so an unmeasured shape never looks cheaper than it may be.</summary>
    public double At(double x)
    {
        if (_w <= 0)
        {
            return 0;
        }

        var mean = _y / _w;
        var meanX = _x / _w;
        var varX = (_xx / _w) - (meanX * meanX);
        if (varX < 1e-9)
        {
            return x <= meanX || meanX <= 0 ? mean : mean * x / meanX;
        }

        var slope = Math.Max(0, ((_xy / _w) - (meanX * mean)) / varX);
        return Math.Max(0, mean + (slope * (x - meanX)));
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

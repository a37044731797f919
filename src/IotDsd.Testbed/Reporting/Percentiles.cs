namespace IotDsd.Testbed.Reporting;

/// <summary>The percentile every report of the project uses.</summary>
public static class Percentiles
{
    /// <summary>Nearest-rank percentile; 0 for an empty list.</summary>
    public static double Of(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0)
        {
            return 0;
        }

        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(q * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}

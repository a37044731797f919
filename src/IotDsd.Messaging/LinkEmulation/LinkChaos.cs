namespace IotDsd.Messaging.LinkEmulation;

/// <summary>
/// A seeded schedule of random link cuts: the link stays up for a uniform draw from
/// [<see cref="UpMin"/>, <see cref="UpMax"/>], then is cut for a uniform draw from [<see cref="CutMin"/>, <see cref="CutMax"/>],
/// <see cref="Count"/> times. The same seed gives the same durations.
/// </summary>
public sealed record LinkChaos
{
    public int Count { get; init; } = 10;
    public TimeSpan CutMin { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan CutMax { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan UpMin { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan UpMax { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Half-open instead of a reset for this fraction of the outages (0 … 1).</summary>
    public double HalfOpenFraction { get; init; }

    public int Seed { get; init; } = 1;

    /// <summary>Returns null when valid, else a one-line reason.</summary>
    public string? Validate()
    {
        if (Count < 0)
        {
            return $"cut count must not be negative, got {Count}";
        }

        if (CutMin < TimeSpan.Zero || CutMax < CutMin || UpMin < TimeSpan.Zero || UpMax < UpMin)
        {
            return "cut and up durations must be non-negative with min <= max";
        }

        return HalfOpenFraction is < 0 or > 1 ? $"half-open fraction must be between 0 and 1, got {HalfOpenFraction}" : null;
    }

    /// <summary>The (up, down, half-open) durations this schedule will use, in order.</summary>
    public IReadOnlyList<(TimeSpan Up, TimeSpan Down, bool HalfOpen)> Plan()
    {
        var random = new Random(Seed);
        var plan = new List<(TimeSpan, TimeSpan, bool)>(Count);
        for (var i = 0; i < Count; i++)
        {
            var up = UpMin + ((UpMax - UpMin) * random.NextDouble());
            var down = CutMin + ((CutMax - CutMin) * random.NextDouble());
            plan.Add((up, down, random.NextDouble() < HalfOpenFraction));
        }

        return plan;
    }

    /// <summary>Runs the schedule against <paramref name="link"/>; the link is left up at the end (or when cancelled).</summary>
    /// <param name="onOutage">Called with (index, duration, half-open) as each outage starts.</param>
    public async Task<TimeSpan> RunAsync(LinkEmulator link, TimeProvider? time = null, Action<int, TimeSpan, bool>? onOutage = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(link);
        if (Validate() is { } bad)
        {
            throw new ArgumentException(bad);
        }

        time ??= TimeProvider.System;
        var down = TimeSpan.Zero;
        var index = 0;
        try
        {
            foreach (var (upFor, downFor, halfOpen) in Plan())
            {
                await Task.Delay(upFor, time, ct).ConfigureAwait(false);
                onOutage?.Invoke(index++, downFor, halfOpen);
                if (halfOpen)
                {
                    link.HalfOpen();
                }
                else
                {
                    link.Cut();
                }

                await Task.Delay(downFor, time, ct).ConfigureAwait(false);
                link.Restore();
                down += downFor;
            }
        }
        finally
        {
            link.Restore();
        }

        return down;
    }
}

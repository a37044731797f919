using System.Globalization;

namespace IotDsd.Messaging.LinkEmulation;

/// <summary>
/// How one direction of an emulated link behaves: a fixed one-way delay, a uniform jitter added on top
/// (0 … <see cref="Jitter"/>), and a bandwidth limit. Bytes are never reordered: a chunk is delivered no earlier than
/// the one before it, so jitter stretches gaps but never swaps data (as on a real TCP path).
/// </summary>
public sealed record LinkProfile
{
    /// <summary>No delay, no jitter, no bandwidth limit.</summary>
    public static LinkProfile Perfect { get; } = new();

    /// <summary>One-way delay added to every chunk.</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>Upper bound of a uniform random extra delay per chunk.</summary>
    public TimeSpan Jitter { get; init; }

    /// <summary>Bytes per second; 0 is unlimited.</summary>
    public long BytesPerSecond { get; init; }

    /// <summary>Returns null when valid, else a one-line reason.</summary>
    public string? Validate()
    {
        if (Delay < TimeSpan.Zero || Delay > TimeSpan.FromMinutes(10))
        {
            return $"delay must be between 0 and 600000 ms, got {Delay.TotalMilliseconds} ms";
        }

        if (Jitter < TimeSpan.Zero || Jitter > TimeSpan.FromMinutes(10))
        {
            return $"jitter must be between 0 and 600000 ms, got {Jitter.TotalMilliseconds} ms";
        }

        if (BytesPerSecond < 0)
        {
            return $"bandwidth must be 0 (unlimited) or positive, got {BytesPerSecond} B/s";
        }

        return null;
    }

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"delay {Delay.TotalMilliseconds:0.#} ms, jitter {Jitter.TotalMilliseconds:0.#} ms, {(BytesPerSecond == 0 ? "unlimited" : $"{BytesPerSecond} B/s")}");
}

/// <summary>What an emulated link does with traffic.</summary>
public enum LinkState
{
    /// <summary>Forwards both ways under the configured profiles.</summary>
    Up,

    /// <summary>Every connection was reset; new ones are accepted and reset at once.</summary>
    Cut,

    /// <summary>Connections stay open and new ones are accepted, but no byte is forwarded either way.</summary>
    HalfOpen,
}

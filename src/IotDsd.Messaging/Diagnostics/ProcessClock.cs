using System.Diagnostics;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>Time since this process started, for start-up figures (process start to first MQTT connect).</summary>
public static class ProcessClock
{
    private static readonly DateTimeOffset Started = new(Process.GetCurrentProcess().StartTime);

    public static TimeSpan SinceStart(TimeProvider time) => time.GetUtcNow() - Started;

    /// <summary>Unix milliseconds now.</summary>
    public static long NowMs(TimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();
}

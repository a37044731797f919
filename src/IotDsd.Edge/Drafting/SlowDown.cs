using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// A verifier's <c>Overloaded</c> answer to a round ("slow down": a per-device request rate, or its load) means the
/// round was refused before it was processed, so the same round may go again. The device pauses, doubling from 10 ms
/// to 2 s, and gives up on a round only after <see cref="MaxInRow"/> refusals in a row.
/// </summary>
internal sealed partial class SlowDown(ILogger logger, TimeProvider time, string sessionId)
{
    public const int MaxInRow = 12;
    private long _round = -1;
    private int _inRow;

    /// <summary>Counts a refusal of <paramref name="round"/>; false once the round was refused too often in a row.</summary>
    public bool Allows(long round)
    {
        _inRow = round == _round ? _inRow + 1 : 1;
        _round = round;
        return _inRow <= MaxInRow;
    }

    /// <summary>Waits before the refused round goes again.</summary>
    public Task WaitAsync(string reason, CancellationToken ct)
    {
        var delay = TimeSpan.FromMilliseconds(Math.Min(2000, 10 * Math.Pow(2, _inRow - 1)));
        Log.SlowingDown(logger, sessionId, _round, delay.TotalMilliseconds, reason);
        return Task.Delay(delay, time, ct);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 322, Level = LogLevel.Warning, Message = "Session {SessionId}: the verifier refused round {Round} as overloaded, sending it again in {DelayMs:0} ms: {Reason}")]
        public static partial void SlowingDown(ILogger logger, string sessionId, long round, double delayMs, string reason);
    }
}

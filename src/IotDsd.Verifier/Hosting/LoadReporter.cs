using System.Threading.Channels;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// Measures how busy the verifier's loop is and keeps its retained status carrying its load: republished at most
/// every <see cref="VerifierOptions.LoadRefresh"/> while the load changes, and at once, after the batch that shows it,
/// when the session count moves a lot, so devices placing new sessions see it soon. Nothing is sent while the load stands.
/// </summary>
internal sealed class LoadReporter(VerifierOptions options, Func<int> sessions, Func<int> queueDepth, TimeProvider time, long cacheBytesPerToken = 0, Func<long>? memory = null)
{
    private readonly Lock _lock = new();
    private long _busyTicks;
    private long _batches;
    private long _windowStart = time.GetTimestamp();
    private long _publishedAt = time.GetTimestamp();
    private double _busy; // smoothed over about one refresh period: one window's busy fraction swings from batch to batch
    private VerifierLoad _current = VerifierLoad.Of(0, 0, 0, 0, options.CapacityWeight, options.MaxSessions) with { CacheBytesPerToken = cacheBytesPerToken, MemoryBytes = 0 };

    // Set by a batch that moved the session count a lot (opens or closes); the reporter publishes without its tick.
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>The load the status carries now (the birth on every connect reads it too).</summary>
    public VerifierLoad Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    /// <summary>
    /// One batch ran from <paramref name="start"/> to <paramref name="end"/> (timestamps of the time provider). A batch
    /// whose opens or closes moved the session count a lot wakes the reporter at once, so many sessions closing
    /// together are published before the devices place their next ones.
    /// </summary>
    public void Batch(long start, long end)
    {
        bool jumped;
        lock (_lock)
        {
            _busyTicks += Math.Max(0, end - start);
            _batches++;
            jumped = Jump(sessions(), _current.Sessions);
        }

        if (jumped)
        {
            _wake.Writer.TryWrite(true);
        }
    }

    /// <summary>A move in the session count big enough to publish at once: max(2, 10 %).</summary>
    private static bool Jump(int now, int last) => Math.Abs(now - last) >= Math.Max(2, 0.1 * last);

    /// <summary>
    /// Measures the load now; true (and <see cref="Current"/> updated, the window restarted) when it should be
    /// published: the session count or the score moved by at least max(2, 10 %), or a refresh period passed and the load
    /// changed.
    /// </summary>
    public bool Refresh()
    {
        lock (_lock)
        {
            var now = time.GetTimestamp();
            var window = time.GetElapsedTime(_windowStart, now);
            var windowBusy = window > TimeSpan.Zero ? Math.Min(1, time.GetElapsedTime(0, _busyTicks) / window) : 0;
            var busy = _busy + ((windowBusy - _busy) * (1 - Math.Exp(-window / options.LoadRefresh)));
            var batchMs = _batches == 0 ? 0 : time.GetElapsedTime(0, _busyTicks).TotalMilliseconds / _batches;
            var load = VerifierLoad.Of(sessions(), queueDepth(), batchMs, busy, options.CapacityWeight, options.MaxSessions)
                with { CacheBytesPerToken = cacheBytesPerToken, MemoryBytes = memory?.Invoke() ?? 0 };
            var last = _current;
            var jump = Jump(load.Sessions, last.Sessions)
                || Math.Abs(load.Score - last.Score) >= Math.Max(2, 0.1 * last.Score);
            var changed = load.Sessions != last.Sessions || Math.Abs(load.Score - last.Score) > Math.Max(0.5, 0.05 * last.Score);
            if (!jump && !(changed && time.GetElapsedTime(_publishedAt, now) >= options.LoadRefresh))
            {
                return false;
            }

            (_current, _busy, _publishedAt, _windowStart, _busyTicks, _batches) = (load, busy, now, now, 0, 0);
            return true;
        }
    }

    /// <summary>Checks the load every tenth of the refresh period and republishes the status when due, until cancelled.</summary>
    public async Task RunAsync(MqttConnection connection, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.LoadRefresh / 10, time);
        var tick = timer.WaitForNextTickAsync(ct).AsTask();
        var woken = _wake.Reader.WaitToReadAsync(ct).AsTask();
        try
        {
            while (true)
            {
                if (await Task.WhenAny(tick, woken).ConfigureAwait(false) == tick)
                {
                    if (!await tick.ConfigureAwait(false))
                    {
                        return;
                    }

                    tick = timer.WaitForNextTickAsync(ct).AsTask();
                }
                else
                {
                    await woken.ConfigureAwait(false);
                    _wake.Reader.TryRead(out _);
                    woken = _wake.Reader.WaitToReadAsync(ct).AsTask();
                }

                if (connection.IsConnected && Refresh())
                {
                    try
                    {
                        await connection.RepublishBirthAsync(ct).ConfigureAwait(false);
                    }
                    catch (MqttPublishException)
                    {
                        // The link is going down; the birth on reconnect carries the load.
                    }
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }
}

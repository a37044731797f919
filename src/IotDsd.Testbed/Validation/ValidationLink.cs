using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace IotDsd.Testbed.Validation;

/// <summary>
/// The link the validation runs the real system through: a TCP proxy on loopback that delays each direction by half
/// the RTT (± jitter, in order) and serialises it at the given bandwidth — the link model the simulator uses. Kept
/// minimal and self-contained; the project's general link emulator can take its place (same construction: upstream,
/// per-direction delay, jitter and bytes per second).
/// </summary>
internal sealed class ValidationLink : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _upstream;
    private readonly Direction _up;
    private readonly Direction _down;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private readonly List<TcpClient> _clients = [];
    private Task? _accepting;

    public ValidationLink(int upstreamPort, double rttMs, double jitterMs, double upMbps, double downMbps, int seed = 1)
    {
        _upstream = new IPEndPoint(IPAddress.Loopback, upstreamPort);
        _up = new Direction(rttMs / 2, jitterMs, upMbps, new Random(seed));
        _down = new Direction(rttMs / 2, jitterMs, downMbps, new Random(seed + 1));
    }

    /// <summary>Mean lateness of deliveries beyond the emulated delay, milliseconds, up and down.</summary>
    public (double Up, double Down) MeanLateMs => (_up.MeanLateMs, _down.MeanLateMs);

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public void Start()
    {
        _listener.Start();
        _accepting = AcceptAsync(_stop.Token);
    }

    private async Task AcceptAsync(CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(ct).ConfigureAwait(false);
                var server = new TcpClient { NoDelay = true };
                await server.ConnectAsync(_upstream, ct).ConfigureAwait(false);
                client.NoDelay = true;
                lock (_clients)
                {
                    _clients.Add(client);
                    _clients.Add(server);
                    _tasks.Add(PumpAsync(client.GetStream(), server.GetStream(), _up, ct));
                    _tasks.Add(PumpAsync(server.GetStream(), client.GetStream(), _down, ct));
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private static async Task PumpAsync(NetworkStream from, NetworkStream to, Direction link, CancellationToken ct)
    {
        var queue = Channel.CreateUnbounded<(long Due, byte[] Data)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var writer = Task.Run(async () =>
        {
            await foreach (var (due, data) in queue.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                await WaitUntilAsync(due, ct).ConfigureAwait(false);
                link.Late(Stopwatch.GetTimestamp() - due);
                await to.WriteAsync(data, ct).ConfigureAwait(false);
            }
        }, ct);
        try
        {
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var n = await from.ReadAsync(buffer, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                queue.Writer.TryWrite((link.Due(Stopwatch.GetTimestamp(), n), buffer.AsSpan(0, n).ToArray()));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
        finally
        {
            queue.Writer.TryComplete();
        }

        try
        {
            await writer.ConfigureAwait(false);
            to.Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or SocketException)
        {
        }
    }

    /// <summary>Sleeps most of the wait, then spins the last millisecond: timer wake-ups are late by about that much.</summary>
    private static async Task WaitUntilAsync(long due, CancellationToken ct)
    {
        var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
        if (remaining > TimeSpan.FromMilliseconds(1.5))
        {
            await Task.Delay(remaining - TimeSpan.FromMilliseconds(1), TimeProvider.System, ct).ConfigureAwait(false);
        }

        var spin = new SpinWait();
        while (Stopwatch.GetTimestamp() < due)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        lock (_clients)
        {
            foreach (var c in _clients)
            {
                c.Dispose();
            }
        }

        if (_accepting is not null)
        {
            await _accepting.ConfigureAwait(false);
        }

        Task[] tasks;
        lock (_clients)
        {
            tasks = [.. _tasks];
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>One direction: serialisation at the bandwidth, then the one-way delay ± jitter, never reordering.</summary>
    private sealed class Direction(double delayMs, double jitterMs, double mbps, Random random)
    {
        private long _freeAt;
        private long _lastDue;
        private long _lateTicks;
        private long _chunks;

        /// <summary>Mean lateness of deliveries, milliseconds (timer wake-ups on a busy machine).</summary>
        public double MeanLateMs => _chunks == 0 ? 0 : Interlocked.Read(ref _lateTicks) * 1000.0 / Stopwatch.Frequency / Interlocked.Read(ref _chunks);

        public void Late(long ticks)
        {
            Interlocked.Add(ref _lateTicks, ticks);
            Interlocked.Increment(ref _chunks);
        }

        public long Due(long now, int bytes)
        {
            var start = Math.Max(now, _freeAt);
            _freeAt = start + Ticks(bytes * 8.0 / (mbps * 1000.0));
            var delay = Math.Max(0, delayMs + (jitterMs * ((2 * random.NextDouble()) - 1)));
            _lastDue = Math.Max(_freeAt + Ticks(delay), _lastDue);
            return _lastDue;
        }

        private static long Ticks(double ms) => (long)(ms * Stopwatch.Frequency / 1000.0);
    }
}

using System.Net.Sockets;
using System.Threading.Channels;

namespace IotDsd.Messaging.LinkEmulation;

/// <summary>
/// One client connection through a <see cref="LinkEmulator"/>: a reader and a writer per direction with a bounded
/// queue of timed chunks between them (the link's buffer). Reading waits while the link is half-open, and so does
/// writing, so nothing moves and nothing is lost until the link is restored or cut.
/// </summary>
internal sealed class LinkConnection : IDisposable
{
    private const int QueuedChunks = 64;
    private readonly LinkEmulator _link;
    private readonly Socket _client;
    private readonly Socket _upstream;
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _cts;
    private int _aborted;

    public LinkConnection(LinkEmulator link, Socket client, string host, int port, CancellationToken stopping)
    {
        _link = link;
        _client = client;
        _host = host;
        _port = port;
        _upstream = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _cts = CancellationTokenSource.CreateLinkedTokenSource(stopping);
    }

    public async Task RunAsync()
    {
        var ct = _cts.Token;
        // A half-open link accepts but never forwards: the upstream is not even dialled until it is restored.
        await _link.WhenOpenAsync(ct).ConfigureAwait(false);
        try
        {
            await _upstream.ConnectAsync(_host, _port, ct).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            _link.UpstreamFailed(ex.Message);
            Abort();
            return;
        }

        var up = PumpAsync(_client, _upstream, up: true, ct);
        var down = PumpAsync(_upstream, _client, up: false, ct);
        var first = await Task.WhenAny(up, down).ConfigureAwait(false);
        if (first.IsFaulted || first.IsCanceled)
        {
            Abort();
        }

        try
        {
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        finally
        {
            Abort();
        }
    }

    private async Task PumpAsync(Socket source, Socket destination, bool up, CancellationToken ct)
    {
        var queue = Channel.CreateBounded<(byte[] Data, int Length, long Due)>(new BoundedChannelOptions(QueuedChunks)
        {
            SingleReader = true,
            SingleWriter = true,
        });
        var writer = WriteAsync(queue.Reader, destination, up, ct);
        long lastDue = 0;
        try
        {
            while (true)
            {
                await _link.WhenOpenAsync(ct).ConfigureAwait(false);
                var buffer = new byte[_link.ChunkSize(up)];
                var n = await source.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                // Never before the previous chunk: jitter stretches gaps, it does not reorder a byte stream.
                lastDue = Math.Max(lastDue, _link.ScheduleDelivery(up, n));
                await queue.Writer.WriteAsync((buffer, n, lastDue), ct).ConfigureAwait(false);
            }
        }
        finally
        {
            queue.Writer.TryComplete();
        }

        await writer.ConfigureAwait(false);
    }

    private async Task WriteAsync(ChannelReader<(byte[] Data, int Length, long Due)> queue, Socket destination, bool up, CancellationToken ct)
    {
        var time = _link.Time;
        await foreach (var (data, length, due) in queue.ReadAllAsync(ct).ConfigureAwait(false))
        {
            // Timers round to whole milliseconds and may fire a little early: wait again until the chunk is due, so a
            // delay is never shorter than configured.
            for (var wait = due - time.GetTimestamp(); wait > 0; wait = due - time.GetTimestamp())
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Ceiling(wait * 1000.0 / time.TimestampFrequency)), time, ct).ConfigureAwait(false);
            }

            _link.Late(up, time.GetTimestamp() - due);
            await _link.WhenOpenAsync(ct).ConfigureAwait(false);
            var sent = 0;
            while (sent < length)
            {
                sent += await destination.SendAsync(data.AsMemory(sent, length - sent), SocketFlags.None, ct).ConfigureAwait(false);
            }

            _link.Delivered(up, length);
        }

        // The source closed cleanly: pass the FIN on once everything before it is delivered.
        try
        {
            destination.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Resets both sides (TCP RST) and stops both directions.</summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) == 1)
        {
            return;
        }

        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }

        Reset(_client);
        Reset(_upstream);
    }

    /// <summary>Closes a socket with linger 0, so the peer sees a reset rather than an orderly close.</summary>
    public static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }

    public void Dispose()
    {
        Abort();
        _cts.Dispose();
    }
}

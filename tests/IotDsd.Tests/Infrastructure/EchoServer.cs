using System.Net;
using System.Net.Sockets;

namespace IotDsd.Tests.Infrastructure;

/// <summary>A loopback TCP server that echoes every byte back, for testing what lies between client and server.</summary>
public sealed class EchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _loop;
    private int _accepted;

    public EchoServer()
    {
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _loop = Task.Run(AcceptAsync);
    }

    public int Port { get; }

    public int Accepted => Volatile.Read(ref _accepted);

    private async Task AcceptAsync()
    {
        while (!_cts.IsCancellationRequested)
        {
            try
            {
                var client = await _listener.AcceptTcpClientAsync(_cts.Token);
                Interlocked.Increment(ref _accepted);
                _ = Task.Run(async () =>
                {
                    using (client)
                    {
                        var stream = client.GetStream();
                        var buffer = new byte[8192];
                        try
                        {
                            int n;
                            while ((n = await stream.ReadAsync(buffer, _cts.Token)) > 0)
                            {
                                await stream.WriteAsync(buffer.AsMemory(0, n), _cts.Token);
                            }
                        }
                        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
                        {
                        }
                    }
                });
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        _listener.Stop();
        await _loop;
        _cts.Dispose();
    }
}

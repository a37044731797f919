using System.Diagnostics;
using System.Net.Sockets;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Tests;

/// <summary>The user-space link emulator over real loopback sockets.</summary>
public sealed class LinkEmulatorTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static async Task<byte[]> ReadExactlyAsync(NetworkStream stream, int count)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(Patience);
        return buffer;
    }

    /// <summary>A client connected through <paramref name="link"/> whose first byte has made the round trip.</summary>
    private static async Task<(TcpClient Client, NetworkStream Stream)> ConnectedAsync(LinkEmulator link)
    {
        var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", link.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(new byte[] { 9 });
        await ReadExactlyAsync(stream, 1);
        return (client, stream);
    }

    [Fact]
    public async Task Forward_DelayJitterAndSmallChunks_EveryByteInOrder()
    {
        await using var echo = new EchoServer();
        await using var link = new LinkEmulator(new LinkEmulatorOptions
        {
            UpstreamHost = "127.0.0.1",
            UpstreamPort = echo.Port,
            Up = new LinkProfile { Delay = TimeSpan.FromMilliseconds(5), Jitter = TimeSpan.FromMilliseconds(20) },
            Down = new LinkProfile { Jitter = TimeSpan.FromMilliseconds(20), BytesPerSecond = 2_000_000 },
            Seed = 3,
        });
        await link.StartAsync();
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", link.Port);
        var stream = client.GetStream();
        var payload = new byte[300_000];
        new Random(5).NextBytes(payload);
        var send = Task.Run(async () =>
        {
            for (var i = 0; i < payload.Length; i += 7_000)
            {
                await stream.WriteAsync(payload.AsMemory(i, Math.Min(7_000, payload.Length - i)));
            }
        });
        var echoed = await ReadExactlyAsync(stream, payload.Length);
        await send;
        Assert.Equal(payload, echoed);
        // The emulator counts a chunk once its send has returned, which may be just after the reader has it.
        await Security.ConfinementTests.WaitUntil(() => link.BytesDown >= payload.Length && link.BytesUp >= payload.Length);
        Assert.Equal(payload.Length, link.BytesUp);
        Assert.Equal(payload.Length, link.BytesDown);
    }

    [Fact]
    public async Task Delay_EchoRoundTrip_NoFasterThanTwoDelays()
    {
        await using var echo = new EchoServer();
        await using var link = new LinkEmulator(0, "127.0.0.1", echo.Port);
        var oneWay = new LinkProfile { Delay = TimeSpan.FromMilliseconds(150) };
        link.Configure(oneWay, oneWay);
        await link.StartAsync();
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", link.Port);
        var stream = client.GetStream();
        var started = Stopwatch.GetTimestamp();
        await stream.WriteAsync(new byte[] { 1, 2, 3 });
        Assert.Equal(new byte[] { 1, 2, 3 }, await ReadExactlyAsync(stream, 3));
        // A lower bound is a property of the emulator, not a speed measurement: no echo can beat two one-way delays.
        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(300), $"round trip took {Stopwatch.GetElapsedTime(started).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task Bandwidth_LiveReconfigured_LimitApplies()
    {
        await using var echo = new EchoServer();
        await using var link = new LinkEmulator(0, "127.0.0.1", echo.Port);
        await link.StartAsync();
        var (client, stream) = await ConnectedAsync(link);
        using var _ = client;

        // Reconfigured while the connection is open: 100 KB at 200 KB/s up cannot take less than half a second.
        link.Configure(new LinkProfile { BytesPerSecond = 200_000 }, LinkProfile.Perfect);
        var started = Stopwatch.GetTimestamp();
        var data = new byte[100_000];
        var send = stream.WriteAsync(data).AsTask();
        await ReadExactlyAsync(stream, data.Length);
        await send;
        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(450), $"took {Stopwatch.GetElapsedTime(started).TotalMilliseconds} ms");
        Assert.Equal(200_000, link.Up.BytesPerSecond);
    }

    [Fact]
    public async Task Cut_OpenAndNewConnections_ResetUntilRestored()
    {
        await using var echo = new EchoServer();
        await using var link = new LinkEmulator(0, "127.0.0.1", echo.Port);
        await link.StartAsync();
        var (before, stream) = await ConnectedAsync(link);
        using var _ = before;

        link.Cut();
        Assert.Equal(LinkState.Cut, link.State);
        await Assert.ThrowsAnyAsync<IOException>(async () =>
        {
            var b = new byte[1];
            var n = await stream.ReadAsync(b).AsTask().WaitAsync(Patience);
            if (n == 0)
            {
                throw new IOException("closed");
            }
        });

        using var during = new TcpClient();
        var refused = await Record.ExceptionAsync(async () =>
        {
            // Accepted by the kernel, then reset: the connect or the first exchange fails.
            await during.ConnectAsync("127.0.0.1", link.Port);
            var s = during.GetStream();
            await s.WriteAsync(new byte[] { 1 });
            var n = await s.ReadAsync(new byte[1]).AsTask().WaitAsync(Patience);
            if (n == 0)
            {
                throw new IOException("closed");
            }
        });
        Assert.True(refused is IOException or SocketException, $"expected a reset, got {refused}");
        Assert.True(link.Refused >= 1);

        link.Restore();
        using var after = new TcpClient();
        await after.ConnectAsync("127.0.0.1", link.Port);
        var s2 = after.GetStream();
        await s2.WriteAsync(new byte[] { 7, 8 });
        Assert.Equal(new byte[] { 7, 8 }, await ReadExactlyAsync(s2, 2));
    }

    [Fact]
    public async Task HalfOpen_NothingForwarded_RestoreDeliversEverythingOnSameConnection()
    {
        await using var echo = new EchoServer();
        await using var link = new LinkEmulator(0, "127.0.0.1", echo.Port);
        await link.StartAsync();
        var (client, stream) = await ConnectedAsync(link);
        using var _ = client;

        link.HalfOpen();
        await stream.WriteAsync(new byte[] { 2, 3, 4 });
        var read = new byte[3];
        var pending = stream.ReadExactlyAsync(read).AsTask();
        var finished = await Task.WhenAny(pending, Task.Delay(TimeSpan.FromMilliseconds(500)));
        Assert.NotSame(pending, finished);

        // A new connection is accepted but never reaches the upstream while half-open.
        var upstreamBefore = echo.Accepted;
        using var late = new TcpClient();
        await late.ConnectAsync("127.0.0.1", link.Port);
        await Task.Delay(200);
        Assert.Equal(upstreamBefore, echo.Accepted);

        link.Restore();
        await pending.WaitAsync(Patience);
        Assert.Equal(new byte[] { 2, 3, 4 }, read);
        var lateStream = late.GetStream();
        await lateStream.WriteAsync(new byte[] { 5 });
        Assert.Equal(new byte[] { 5 }, await ReadExactlyAsync(lateStream, 1));
    }

    [Fact]
    public async Task MqttConnection_LinkCutAndRestored_Reconnects()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await link.StartAsync();
        var settings = new MqttSettings { Broker = new BrokerAddress("127.0.0.1", link.Port), ClientId = "link-test", KeepAlive = TimeSpan.FromSeconds(5) };
        await using var connection = new MqttConnection(settings, _ => false, NullLogger.Instance);
        var reconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.Connected += _ =>
        {
            if (connection.Connections >= 2)
            {
                reconnected.TrySetResult();
            }
        };
        await connection.ConnectAsync(["t/#"], CancellationToken.None);
        Assert.Equal(1, connection.Connections);

        link.Cut();
        await Task.Delay(300);
        Assert.False(reconnected.Task.IsCompleted);
        link.Restore();
        await reconnected.Task.WaitAsync(Patience);
        await connection.PublishRawAsync("t/x", [1], retain: false, CancellationToken.None);
    }

    [Fact]
    public async Task MqttConnection_PublishesCancelledByTheCaller_NotCountedAsATimedOutLink()
    {
        // Over a 400 ms link, publishes whose caller gives up after 50 ms while the PUBACK is on its way: the caller's
        // cancellation says nothing of the link, so three in a row (two timeouts declare a link dead) must leave the
        // connection up, no dead link counted, and a later publish still acknowledged.
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        await link.StartAsync();
        var settings = new MqttSettings { Broker = new BrokerAddress("127.0.0.1", link.Port), ClientId = "cancel-test", KeepAlive = TimeSpan.FromSeconds(30) };
        await using var connection = new MqttConnection(settings, _ => false, NullLogger.Instance);
        await connection.ConnectAsync([], CancellationToken.None);
        link.Configure(new LinkProfile { Delay = TimeSpan.FromMilliseconds(200) }, new LinkProfile { Delay = TimeSpan.FromMilliseconds(200) });
        for (var i = 0; i < 3; i++)
        {
            using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => connection.PublishRawAsync($"t/{i}", new byte[4096], retain: false, caller.Token));
        }

        Assert.Equal(0, connection.DeadLinksDetected);
        Assert.Equal(1, connection.Connections);
        await connection.PublishRawAsync("t/after", [1], retain: false, CancellationToken.None).WaitAsync(Patience);
        Assert.Equal(1, connection.Connections);
    }

    [Fact]
    public void Configure_InvalidProfile_ClearError()
    {
        var link = new LinkEmulator(0, "127.0.0.1", 1);
        var ex = Assert.Throws<ArgumentException>(() => link.Configure(new LinkProfile { Delay = TimeSpan.FromMilliseconds(-1) }, LinkProfile.Perfect));
        Assert.Contains("delay", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new LinkEmulator(0, "", 1883));
    }

    [Fact]
    public void Chaos_SameSeed_SamePlanWithinBounds()
    {
        var chaos = new LinkChaos { Count = 50, CutMin = TimeSpan.FromSeconds(1), CutMax = TimeSpan.FromSeconds(10), Seed = 9 };
        var a = chaos.Plan();
        Assert.Equal(a, chaos.Plan());
        Assert.Equal(50, a.Count);
        Assert.All(a, p => Assert.InRange(p.Down, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10)));
        Assert.NotEqual(a, (chaos with { Seed = 10 }).Plan());
    }
}

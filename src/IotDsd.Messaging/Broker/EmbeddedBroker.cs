using System.Net;
using System.Net.Sockets;
using MQTTnet.Server;

namespace IotDsd.Messaging.Broker;

/// <summary>The in-process MQTTnet broker, on loopback by default, with Nagle off and persistent sessions.</summary>
public sealed class EmbeddedBroker : IAsyncDisposable
{
    private readonly MqttServer _server;

    private EmbeddedBroker(MqttServer server, int port, IPAddress address)
    {
        _server = server;
        Port = port;
        Address = address;
    }

    /// <summary>The TCP port it listens on.</summary>
    public int Port { get; }

    /// <summary>The address it is bound to.</summary>
    public IPAddress Address { get; }

    /// <summary>The underlying server, for tests that inspect sessions or retained messages.</summary>
    public MqttServer Server => _server;

    /// <summary>Starts a broker; port 0 picks a free one.</summary>
    public static async Task<EmbeddedBroker> StartAsync(int port = 0, IPAddress? address = null)
    {
        address ??= IPAddress.Loopback;
        if (port == 0)
        {
            port = FreePort(address);
        }

        var options = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(address)
            .WithDefaultEndpointPort(port)
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(10_000)
            .Build();
        options.DefaultEndpointOptions.NoDelay = true;
        var server = new MqttServerFactory().CreateMqttServer(options);
        try
        {
            await server.StartAsync().ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            server.Dispose();
            throw new InvalidOperationException($"cannot start the embedded broker on {address}:{port}: {ex.Message}", ex);
        }

        return new EmbeddedBroker(server, port, address);
    }

    /// <summary>A port that was free a moment ago.</summary>
    public static int FreePort(IPAddress? address = null)
    {
        using var listener = new TcpListener(address ?? IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        await _server.StopAsync(new MqttServerStopOptions()).ConfigureAwait(false);
        _server.Dispose();
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;
using IotDsd.Messaging.Broker;
using Xunit.Abstractions;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// Mosquitto in a container started by Testcontainers. The image is IOTDSD_MOSQUITTO_IMAGE (default: the official
/// <c>eclipse-mosquitto:2</c>; CI builds a local one with broker/build-local-image.sh). The container uses host
/// networking and a generated config on a free loopback port, unless IOTDSD_MOSQUITTO_NETWORK=bridge asks for a
/// mapped port. Without a reachable Docker engine <see cref="TryStart"/> skips the test with the reason (so callers are
/// <c>[SkippableFact]</c>) — unless IOTDSD_REQUIRE_DOCKER=1 (CI), where that fails the test.
/// </summary>
public sealed class MosquittoContainer : IAsyncDisposable
{
    private readonly IContainer _container;

    private MosquittoContainer(IContainer container, int port)
    {
        _container = container;
        Port = port;
    }

    public int Port { get; }

    public static string Image => Environment.GetEnvironmentVariable("IOTDSD_MOSQUITTO_IMAGE") is { Length: > 0 } image ? image : "eclipse-mosquitto:2";

    public static bool Required => Environment.GetEnvironmentVariable("IOTDSD_REQUIRE_DOCKER") == "1";

    private static bool IsDockerUnavailable(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is DockerUnavailableException || e.GetType().Name.Contains("Docker", StringComparison.Ordinal))
            {
                return true;
            }

            if (e is AggregateException aggregate && aggregate.InnerExceptions.Any(IsDockerUnavailable))
            {
                return true;
            }
        }

        return false;
    }

    public static async Task<MosquittoContainer> TryStart(ITestOutputHelper output)
    {
        // No Ryuk reaper image offline: containers are removed by DisposeAsync instead, unless asked otherwise.
        TestcontainersSettings.ResourceReaperEnabled = Environment.GetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED") == "false";
        var bridge = Environment.GetEnvironmentVariable("IOTDSD_MOSQUITTO_NETWORK") == "bridge";
        var port = bridge ? 1883 : EmbeddedBroker.FreePort();
        var config = $"""
            listener {port} {(bridge ? "0.0.0.0" : "127.0.0.1")}
            allow_anonymous true
            set_tcp_nodelay true
            persistence false
            max_packet_size 16777216
            max_queued_messages 100000
            log_dest stderr
            log_type error
            log_type warning

            """;
        var builder = new ContainerBuilder(Image)
            .WithResourceMapping(Encoding.UTF8.GetBytes(config), "/mosquitto/config/mosquitto.conf")
            .WithCommand("/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf");
        builder = bridge
            ? builder.WithPortBinding(1883, assignRandomHostPort: true)
            : builder.WithCreateParameterModifier(p => p.HostConfig!.NetworkMode = "host");
        IContainer? container = null;
        try
        {
            // Build() already asks the engine for its settings, so it throws too when there is none.
            container = builder.Build();
            await container.StartAsync();
        }
        catch (Exception ex) when (IsDockerUnavailable(ex))
        {
            if (container is not null)
            {
                await container.DisposeAsync();
            }

            var root = ex.GetBaseException();
            var reason = $"no Docker engine reachable ({root.GetType().Name}: {root.Message.Split('\n')[0]}); set DOCKER_HOST to run the container tests";
            Assert.False(Required, "IOTDSD_REQUIRE_DOCKER=1 but " + reason);
            throw new SkipException(reason + "; IOTDSD_REQUIRE_DOCKER=1 makes this a failure");
        }

        var hostPort = bridge ? container.GetMappedPublicPort(1883) : port;
        var deadline = Stopwatch.GetTimestamp() + (20 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", hostPort);
                output.WriteLine($"mosquitto container {container.Id[..12]} from {Image} on 127.0.0.1:{hostPort}");
                return new MosquittoContainer(container, hostPort);
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        var (stdout, stderr) = await container.GetLogsAsync();
        await container.DisposeAsync();
        throw new TimeoutException($"mosquitto container from {Image} did not listen on {hostPort} within 20 s: {stdout}{stderr}");
    }

    public ValueTask DisposeAsync() => _container.DisposeAsync();
}

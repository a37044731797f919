using System.Diagnostics;
using System.Net.Sockets;
using IotDsd.Messaging.Broker;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// A real Mosquitto started as a child process on a free loopback port, with <c>set_tcp_nodelay</c>. Where the
/// binary is missing, <see cref="TryStart"/> returns null — unless IOTDSD_REQUIRE_MOSQUITTO=1 (as in CI), in which
/// case it fails the test.
/// </summary>
public sealed class MosquittoProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    private MosquittoProcess(Process process, int port, string dir)
    {
        _process = process;
        Port = port;
        _dir = dir;
    }

    public int Port { get; }

    public static string? Binary =>
        new[] { "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto" }.FirstOrDefault(File.Exists);

    public static bool Required => Environment.GetEnvironmentVariable("IOTDSD_REQUIRE_MOSQUITTO") == "1";

    public static async Task<MosquittoProcess?> TryStart(string extraConfig = "")
    {
        var binary = Binary;
        if (binary is null)
        {
            Assert.False(Required, "IOTDSD_REQUIRE_MOSQUITTO=1 but no mosquitto binary was found (apt-get install mosquitto)");
            return null;
        }

        var port = EmbeddedBroker.FreePort();
        var dir = Directory.CreateTempSubdirectory("iotdsd-mosquitto-").FullName;
        var config = Path.Combine(dir, "mosquitto.conf");
        await File.WriteAllTextAsync(config, $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            set_tcp_nodelay true
            persistence false
            max_packet_size 16777216
            max_queued_messages 100000
            user root
            log_dest stderr
            log_type error
            log_type warning
            {extraConfig}
            """);
        var process = await LaunchAsync(binary, config, port);
        return new MosquittoProcess(process, port, dir);
    }

    /// <summary>Starts mosquitto with <paramref name="config"/> and waits until it accepts connections on <paramref name="port"/>.</summary>
    internal static async Task<Process> LaunchAsync(string binary, string config, int port)
    {
        var process = Process.Start(new ProcessStartInfo(binary, ["-c", config])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        process.ErrorDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"mosquitto exited with code {process.ExitCode} at start");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port);
                return process;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        process.Kill();
        throw new TimeoutException($"mosquitto did not listen on {port} within 10 s");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

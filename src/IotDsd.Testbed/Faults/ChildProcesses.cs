using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using IotDsd.Messaging.Broker;

namespace IotDsd.Testbed.Faults;

/// <summary>
/// Mosquitto as a child process on a free loopback port (<c>set_tcp_nodelay</c> on), optionally with persistence: then
/// it can be stopped the way a service manager stops it and started again with the same store, and sessions and
/// queued QoS 1 messages survive the restart.
/// </summary>
public sealed class MosquittoChild : IAsyncDisposable
{
    private readonly string _dir;
    private readonly string _config;
    private readonly string _binary;
    private Process? _process;

    private MosquittoChild(string binary, string dir, string config, int port)
    {
        _binary = binary;
        _dir = dir;
        _config = config;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The broker binary: $IOTDSD_MOSQUITTO where set (null if no such file), else where Debian's package (or a
    /// local build) puts it; null where it is not installed.</summary>
    public static string? Binary =>
        Environment.GetEnvironmentVariable("IOTDSD_MOSQUITTO") is { Length: > 0 } chosen
            ? File.Exists(chosen) ? chosen : null
            : new[] { "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto" }.FirstOrDefault(File.Exists);

    /// <summary>Starts it with <paramref name="extraConfig"/> appended to the configuration; throws where no binary is installed.</summary>
    public static async Task<MosquittoChild> StartAsync(bool persistence, string extraConfig = "")
    {
        var binary = Binary ?? throw new FileNotFoundException("mosquitto is not installed (apt-get install mosquitto)");
        var port = EmbeddedBroker.FreePort();
        var dir = Directory.CreateTempSubdirectory("iotdsd-mosquitto-").FullName;
        var config = Path.Combine(dir, "mosquitto.conf");
        var store = persistence ? $"persistence true\npersistence_location {dir}/\nautosave_interval 1" : "persistence false";
        await File.WriteAllTextAsync(config, $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            set_tcp_nodelay true
            {store}
            max_packet_size 16777216
            max_queued_messages 100000
            user root
            log_dest stderr
            log_type error
            log_type warning
            {extraConfig}
            """).ConfigureAwait(false);
        var broker = new MosquittoChild(binary, dir, config, port);
        await broker.StartAsync().ConfigureAwait(false);
        return broker;
    }

    /// <summary>Starts (again, after <see cref="StopAsync"/>) and waits until it accepts connections.</summary>
    public async Task StartAsync()
    {
        _process?.Dispose(); // the one StopAsync ended
        _process = await LaunchAsync(_binary, _config, Port).ConfigureAwait(false);
    }

    /// <summary>Stops the broker the way a service manager does (SIGTERM: it saves its store and exits).</summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false } p)
        {
            await Signals.SendAsync(p, "TERM").ConfigureAwait(false);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
    }

    /// <summary>Starts mosquitto with <paramref name="config"/> and waits until it accepts connections on <paramref name="port"/>.</summary>
    private static async Task<Process> LaunchAsync(string binary, string config, int port)
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
                throw new InvalidOperationException($"mosquitto exited with code {process.ExitCode} at start ({config})");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port).ConfigureAwait(false);
                return process;
            }
            catch (SocketException)
            {
                await Task.Delay(50).ConfigureAwait(false);
            }
        }

        process.Kill();
        throw new TimeoutException($"mosquitto did not listen on {port} within 10 s");
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync().ConfigureAwait(false);
        }

        _process?.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>An <c>iotdsd</c> command run as a child process of this one (a verifier or an edge device), killable with SIGKILL.</summary>
public sealed class IotdsdProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private IotdsdProcess(Process process)
    {
        _process = process;
    }

    public static IotdsdProcess Start(params string[] args) => StartWrapped([], args);

    /// <summary>Starts the command behind <paramref name="prefix"/> (e.g. <c>ip netns exec NAME</c>): the prefix must exec it.</summary>
    public static IotdsdProcess StartWrapped(IReadOnlyList<string> prefix, params string[] args)
    {
        // Framework-dependent (a build, or the test host): the host runs iotdsd.dll; self-contained: the binary itself.
        var dll = Path.Combine(AppContext.BaseDirectory, "iotdsd.dll");
        var self = File.Exists(dll) ? new[] { DotnetHost, dll } : [Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell where this iotdsd binary is")];
        var argv = prefix.Concat(self).Concat(args).ToList();
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        var process = Process.Start(psi)!;
        var child = new IotdsdProcess(process);
        process.OutputDataReceived += (_, e) => Append(child._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Append(child._stderr, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    private static string DotnetHost =>
        Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet";

    private static void Append(StringBuilder to, string? line)
    {
        if (line is not null)
        {
            lock (to)
            {
                to.AppendLine(line);
            }
        }
    }

    public string Stdout
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Sends a signal (STOP freezes the process with its sockets open; CONT resumes it).</summary>
    public Task SignalAsync(string signal) => Signals.SendAsync(_process, signal);

    /// <summary>SIGKILL: no clean disconnect, no offline status; the broker publishes the last will.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        _process.Dispose();
    }
}

internal static class Signals
{
    /// <summary>Sends SIG<paramref name="signal"/> to <paramref name="process"/> with <c>kill</c>.</summary>
    public static async Task SendAsync(Process process, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", process.Id.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync().ConfigureAwait(false);
    }
}

using System.Diagnostics;
using IotDsd.Messaging.Broker;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// Mosquitto as a child process with persistence on, on a fixed port, that can be stopped and started again with
/// the same store: sessions and queued QoS 1 messages survive the restart. Null where mosquitto is not installed
/// (a failure under IOTDSD_REQUIRE_MOSQUITTO=1).
/// </summary>
public sealed class RestartableMosquitto : IAsyncDisposable
{
    private readonly string _dir;
    private readonly string _config;
    private Process? _process;

    private RestartableMosquitto(string dir, string config, int port)
    {
        _dir = dir;
        _config = config;
        Port = port;
    }

    public int Port { get; }

    public static async Task<RestartableMosquitto?> TryStart()
    {
        if (MosquittoProcess.Binary is null)
        {
            Assert.False(MosquittoProcess.Required, "IOTDSD_REQUIRE_MOSQUITTO=1 but no mosquitto binary was found");
            return null;
        }

        var port = EmbeddedBroker.FreePort();
        var dir = Directory.CreateTempSubdirectory("iotdsd-mosquitto-p-").FullName;
        var config = Path.Combine(dir, "mosquitto.conf");
        await File.WriteAllTextAsync(config, $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            set_tcp_nodelay true
            persistence true
            persistence_location {dir}/
            autosave_interval 1
            max_packet_size 16777216
            max_queued_messages 100000
            user root
            log_dest stderr
            log_type error
            """);
        var broker = new RestartableMosquitto(dir, config, port);
        await broker.StartAsync();
        return broker;
    }

    public async Task StartAsync() => _process = await MosquittoProcess.LaunchAsync(MosquittoProcess.Binary!, _config, Port);

    /// <summary>Stops the broker the way a service manager does (SIGTERM: it saves its store and exits).</summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false } p)
        {
            using var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await p.WaitForExitAsync(cts.Token);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
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

/// <summary>An <c>iotdsd</c> command run as a child process (a verifier or an edge device), killable with SIGKILL.</summary>
public sealed class IotdsdProcess : IAsyncDisposable
{
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "iotdsd.dll");
    private readonly Process _process;
    private readonly System.Text.StringBuilder _stdout = new();
    private readonly System.Text.StringBuilder _stderr = new();

    private IotdsdProcess(Process process)
    {
        _process = process;
    }

    public static IotdsdProcess Start(params string[] args) => StartWrapped([], args);

    /// <summary>Starts the command behind <paramref name="prefix"/> (e.g. <c>ip netns exec NAME</c>): the prefix must exec it.</summary>
    public static IotdsdProcess StartWrapped(IReadOnlyList<string> prefix, params string[] args)
    {
        var psi = new ProcessStartInfo(prefix.Count == 0 ? "dotnet" : prefix[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (prefix.Count > 0)
        {
            foreach (var p in prefix.Skip(1))
            {
                psi.ArgumentList.Add(p);
            }

            psi.ArgumentList.Add("dotnet");
        }

        psi.ArgumentList.Add(Dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["IOTDSD_MODEL_CACHE"] = Path.GetDirectoryName(Path.GetDirectoryName(TestEnvironment.DraftDir));
        var process = Process.Start(psi)!;
        var child = new IotdsdProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (child._stdout)
                {
                    child._stdout.AppendLine(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (child._stderr)
                {
                    child._stderr.AppendLine(e.Data);
                }
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
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

    /// <summary>Sends a signal (STOP freezes the process with its sockets open; CONT resumes it).</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
    }

    public int ExitCode => _process.ExitCode;

    /// <summary>SIGKILL: no clean disconnect, no offline status; the broker publishes the last will.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}

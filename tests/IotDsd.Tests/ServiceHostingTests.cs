using System.Net;
using System.Net.Sockets;
using System.Text;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The long-running roles as systemd runs them: layered settings with validation, and the notify protocol (READY,
/// a WATCHDOG heartbeat tied to health) over a real notification socket, with the real executable.
/// </summary>
public sealed class ServiceHostingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Device_CheckConfig_FileThenEnvironmentThenFlags()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-config-").FullName;
        var file = Path.Combine(dir, "edge.json");
        await File.WriteAllTextAsync(file, """{ "Mqtt": { "Username": "pi-7" }, "Edge": { "Gamma": 3, "MaxTokens": 50, "DeviceId": "from-file" } }""");
        var env = new Dictionary<string, string> { ["IOTDSD_EDGE__GAMMA"] = "5", ["IOTDSD_MQTT__PASSWORD"] = "hunter2" };
        var (code, stdout, stderr) = await CliProcess.RunAsync(env, "device", "--config", file, "--max-tokens", "70", "--check-config");
        Assert.True(code == 0, stderr);
        output.WriteLine(stdout);
        Assert.Matches(@"Edge:Gamma\s+5\s+\[env IOTDSD_EDGE__GAMMA\]", stdout);
        Assert.Matches(@"Edge:MaxTokens\s+70\s+\[flag --max-tokens\]", stdout);
        Assert.Matches(@"Edge:DeviceId\s+from-file\s+\[file .*edge\.json\]", stdout);
        Assert.Matches(@"Edge:Temperature\s+0\.7\s+\[default\]", stdout);
        Assert.Matches(@"Mqtt:Password\s+\*\*\*\s+\[env IOTDSD_MQTT__PASSWORD\]", stdout);
        Assert.DoesNotContain("hunter2", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "Edge": { "Gama": 3 } }""", new[] { "Edge:Gama", "did you mean Edge:Gamma" })]
    [InlineData("""{ "Edge": { "Gamma": 0 } }""", new[] { "Edge:Gamma = '0'", "must be between 1 and 64", "IOTDSD_EDGE__GAMMA", "--gamma" })]
    [InlineData("""{ "Mqtt": { "Broker": "mqtt://x" } }""", new[] { "Mqtt:Broker", "without a scheme", "--broker" })]
    [InlineData("""{ "Edge": { "Mode": "greedy", "Temperature": 0.5 } }""", new[] { "Edge:" })]
    [InlineData("""{ "Edge": { "RequestTimeoutMs": "soon" } }""", new[] { "Edge:RequestTimeoutMs = 'soon'", "is not a number" })]
    [InlineData("""{ "Edge": """, new[] { "is not valid JSON" })]
    public async Task Device_InvalidSettings_OneLineNamingSettingSourceAndFix(string json, string[] expected)
    {
        var file = Path.Combine(Directory.CreateTempSubdirectory("iotdsd-config-").FullName, "edge.json");
        await File.WriteAllTextAsync(file, json);
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "device", "--config", file, "--check-config");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        foreach (var part in expected)
        {
            Assert.Contains(part, line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task OperationsGuide_DocumentsEveryServiceSetting()
    {
        var guide = FindUp(Path.Combine("docs", "operations.md"));
        var text = await File.ReadAllTextAsync(guide);
        foreach (var role in new[] { "device", "verifier" })
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, role, "--check-config");
            Assert.True(code == 0, stderr);
            var keys = stdout.Split('\n').Where(l => l.Contains(':', StringComparison.Ordinal) && !l.StartsWith('#')).Select(l => l.Split(' ')[0]).ToList();
            Assert.True(keys.Count >= 10, stdout);
            Assert.All(keys, key => Assert.Contains($"`{key}`", text, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Device_UnderNotifySocket_ReadyThenWatchdogStopsWhenBrokerGone()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-notify-").FullName;
        var path = Path.Combine(dir, "notify.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        var broker = await EmbeddedBroker.StartAsync();
        var env = new Dictionary<string, string>
        {
            ["NOTIFY_SOCKET"] = path,
            ["WATCHDOG_USEC"] = "400000",
            ["IOTDSD_MQTT__BROKER"] = $"127.0.0.1:{broker.Port}",
            ["IOTDSD_EDGE__DEVICEID"] = "wd-device",
            ["IOTDSD_EDGE__STATEDIRECTORY"] = Path.Combine(dir, "state"),
            ["IOTDSD_HEALTH__MAXOFFLINEMS"] = "1500",
            ["IOTDSD_DIAGNOSTICS__METRICSINTERVALMS"] = "200",
        };
        using var process = CliProcess.Start(env, "device");
        var received = new List<string>();
        var stopped = false;
        try
        {
            await ReceiveUntilAsync(socket, received, m => m.Contains("READY=1", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            await ReceiveUntilAsync(socket, received, m => m.Contains("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
            await broker.DisposeAsync();
            stopped = true;
            await ReceiveUntilAsync(socket, received, m => m.Contains("STATUS=unhealthy: broker link down", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
            var after = received.Count;
            await ReceiveUntilAsync(socket, received, _ => received.Count >= after + 3, TimeSpan.FromSeconds(10));
            Assert.All(received.Skip(after), m => Assert.DoesNotContain("WATCHDOG=1", m, StringComparison.Ordinal));
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            if (!stopped)
            {
                await broker.DisposeAsync();
            }

            output.WriteLine(string.Join(" | ", received.Select(m => m.Replace('\n', ' '))));
        }
    }

    [Theory]
    [InlineData("verifier")]
    [InlineData("device")]
    public async Task Service_Sigterm_StopsCleanlyWithExitZero(string role)
    {
        // systemd stops a unit with SIGTERM; a crash on the way out would count as a failure and be restarted.
        await using var broker = await EmbeddedBroker.StartAsync();
        var dir = Directory.CreateTempSubdirectory("iotdsd-term-").FullName;
        var env = new Dictionary<string, string>
        {
            ["IOTDSD_MQTT__BROKER"] = $"127.0.0.1:{broker.Port}",
            ["IOTDSD_EDGE__DEVICEID"] = "term-device",
            ["IOTDSD_EDGE__STATEDIRECTORY"] = Path.Combine(dir, "state"),
        };
        using var process = role == "device" ? CliProcess.Start(env, role, "--log-level", "Information") : CliProcess.Start(env, role, "--verbose");
        var stderr = new System.Text.StringBuilder();
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.ErrorDataReceived += (_, e) =>
        {
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }

            if (e.Data?.Contains(" connected to ", StringComparison.Ordinal) == true)
            {
                connected.TrySetResult();
            }
        };
        process.BeginErrorReadLine();
        _ = process.StandardOutput.ReadToEndAsync();
        try
        {
            await connected.Task.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(0, Kill(process.Id, 15));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            lock (stderr)
            {
                Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {stderr}");
                Assert.DoesNotContain("Unhandled exception", stderr.ToString(), StringComparison.Ordinal);
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [Theory]
    [InlineData("verifier")]
    [InlineData("device")]
    public async Task Service_SigtermWhileConnecting_StopsCleanlyWithExitZero(string role)
    {
        // A broker that takes the TCP connection and never answers CONNECT holds the role in its start-up; systemd
        // stopping the unit then must still be a clean stop, not "hosting failed to start".
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                var socket = await silent.AcceptSocketAsync();
                lock (accepted)
                {
                    accepted.Add(socket);
                }
            }
        });
        var dir = Directory.CreateTempSubdirectory("iotdsd-term-").FullName;
        var env = new Dictionary<string, string>
        {
            ["IOTDSD_MQTT__BROKER"] = $"127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}",
            ["IOTDSD_EDGE__DEVICEID"] = "term-device",
            ["IOTDSD_EDGE__STATEDIRECTORY"] = Path.Combine(dir, "state"),
        };
        // At Debug the host's own "Hosting failed to start" report is logged (below Debug it is left to the command's
        // one-line error), so the assertion below can see it.
        using var process = CliProcess.Start(env, role, "--log-level", "Debug");
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
        _ = process.StandardOutput.ReadToEndAsync();
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (true)
            {
                lock (accepted)
                {
                    if (accepted.Count > 0)
                    {
                        break;
                    }
                }

                Assert.True(DateTime.UtcNow < deadline && !process.HasExited, $"the {role} never connected: {stderr}");
                await Task.Delay(50);
            }

            Assert.Equal(0, Kill(process.Id, 15));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            lock (stderr)
            {
                Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {stderr}");
                Assert.DoesNotContain("Unhandled exception", stderr.ToString(), StringComparison.Ordinal);
                Assert.DoesNotContain("Hosting failed to start", stderr.ToString(), StringComparison.Ordinal);
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            silent.Stop();
            lock (accepted)
            {
                accepted.ForEach(s => s.Dispose());
            }
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    private static async Task ReceiveUntilAsync(Socket socket, List<string> received, Func<string, bool> done, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[4096];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            var message = Encoding.UTF8.GetString(buffer, 0, n);
            received.Add(message);
            if (done(message))
            {
                return;
            }
        }
    }

    private static string FindUp(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, name);
            if (File.Exists(candidate) && Directory.Exists(Path.Combine(dir.FullName, "devices")))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"{name} not found above {AppContext.BaseDirectory}");
    }
}

using System.Net;
using System.Net.Sockets;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// Every role that cannot reach its broker ends with one line naming the broker and the reason, and exit code 2: no
/// stack trace from the host, no banner for a service that never started.
/// </summary>
public sealed class BrokerUnreachableTests
{
    public static readonly TheoryData<string[]> Roles = new()
    {
        new[] { "verifier", "--log-level", "Warning" },
        new[] { "verifier" },
        new[] { "device", "--log-level", "Warning" },
        new[] { "edge", "--prompt", "Once upon a time" },
        new[] { "diag", "--once" },
    };

    [Theory]
    [MemberData(nameof(Roles))]
    public async Task Role_BrokerRefusesConnection_OneLineNamingBrokerAndReason_Exit2(string[] args)
    {
        var port = ClosedPort();
        var dir = Directory.CreateTempSubdirectory("iotdsd-unreachable-").FullName;
        try
        {
            var env = new Dictionary<string, string>
            {
                ["IOTDSD_EDGE__DEVICEID"] = "unreachable-device",
                ["IOTDSD_EDGE__STATEDIRECTORY"] = Path.Combine(dir, "state"),
            };
            var (code, stdout, stderr) = await CliProcess.RunAsync(env, [.. args, "--broker", $"127.0.0.1:{port}"]);
            Assert.True(code == 2, $"exit {code}: {stderr}");
            Assert.Equal("", stdout);
            Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", stderr, StringComparison.Ordinal);
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, $"{lines.Length} lines on stderr:\n{stderr}");
            Assert.Equal($"iotdsd {args[0]}: could not connect to broker 127.0.0.1:{port}: Connection refused", lines[0].TrimEnd('\r'));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Verifier_SecondUnderTheSameId_FailsWithOneErrorLine_Exit2_FirstKeepsServing()
    {
        await using var broker = await IotDsd.Messaging.Broker.EmbeddedBroker.StartAsync();
        var address = $"127.0.0.1:{broker.Port}";
        await using var first = IotDsd.Testbed.Faults.IotdsdProcess.Start("verifier", "--broker", address, "--id", "twin", "--target", TestEnvironment.TargetDir);
        await using var watcher = await RawClient.ConnectAsync(broker.Port, "twin-watch", "iotdsd/v1/verifiers/twin/status");
        await watcher.WaitForAsync(m => System.Text.Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal));
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "verifier", "--broker", address, "--id", "twin", "--target", TestEnvironment.TargetDir, "--log-level", "Error");
        Assert.True(code == 2, $"exit {code}: {stderr}");
        Assert.Equal("", stdout);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("iotdsd verifier: ", StringComparison.Ordinal), stderr);

        // The first one is still the verifier: its session was taken over, and it reconnected and said it is online again.
        Assert.False(first.HasExited, "the first verifier stopped: " + first.Stderr);
        bool Online((string Topic, byte[] Payload, byte[]? Correlation) m) => System.Text.Encoding.UTF8.GetString(m.Payload).Contains("\"online\"", StringComparison.Ordinal);
        await watcher.WaitForAsync(_ => watcher.Received.Count(Online) >= 2);
    }

    [Fact]
    public async Task Device_BrokerRefusesConnection_AtInformation_InfoLinesThenTheErrorWithoutStackTrace()
    {
        var port = ClosedPort();
        var dir = Directory.CreateTempSubdirectory("iotdsd-unreachable-").FullName;
        try
        {
            var env = new Dictionary<string, string> { ["IOTDSD_EDGE__STATEDIRECTORY"] = Path.Combine(dir, "state") };
            var (code, _, stderr) = await CliProcess.RunAsync(env, "device", "--broker", $"127.0.0.1:{port}", "--device-id", "unreachable-device");
            Assert.True(code == 2, $"exit {code}: {stderr}");
            Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("fail:", stderr, StringComparison.Ordinal);
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal($"iotdsd device: could not connect to broker 127.0.0.1:{port}: Connection refused", lines[^1].TrimEnd('\r'));
            Assert.All(lines[..^1], l => Assert.Contains(" info: ", l, StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Verifier_BrokerRefusesConnection_Verbose_KeepsTheHostsStackTrace()
    {
        var port = ClosedPort();
        var (code, _, stderr) = await CliProcess.RunAsync(null, "verifier", "--broker", $"127.0.0.1:{port}", "--verbose");
        Assert.Equal(2, code);
        Assert.Contains("   at ", stderr, StringComparison.Ordinal);
        Assert.EndsWith($"iotdsd verifier: could not connect to broker 127.0.0.1:{port}: Connection refused", stderr.TrimEnd());
    }

    /// <summary>A loopback port nothing listens on: bound, then released.</summary>
    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

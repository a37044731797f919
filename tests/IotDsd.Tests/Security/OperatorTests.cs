using System.Diagnostics;
using System.Text;
using System.Text.Json;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests.Security;

/// <summary>
/// Field diagnostics under the production profile (TLS only, every client authenticated and confined by
/// <c>broker/acl</c>): the real <c>iotdsd diag</c> as the operator identity sees a verifier and two devices, each
/// running as its own <c>iotdsd</c> process over a client certificate or a password, with their metrics, and its
/// pings are answered. A publish the ACL refuses is logged once per topic at Warning and counted.
/// </summary>
public sealed class OperatorTests(SecureBrokerFixture fixture, ITestOutputHelper output) : IClassFixture<SecureBrokerFixture>
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(90);

    [SkippableFact]
    public async Task Diag_ProductionProfile_SeesEveryDeviceAndVerifierWithMetrics_PingAnswered()
    {
        var broker = fixture.Broker;
        Skip.If(broker is null, "mosquitto is not installed");
        var work = Directory.CreateTempSubdirectory("iotdsd-operator-").FullName;
        var prompts = Path.Combine(work, "prompts.txt");
        await File.WriteAllTextAsync(prompts, "Once upon a time\n");
        var passwordFile = Path.Combine(work, "dev-b.password");
        await File.WriteAllTextAsync(passwordFile, SecureBroker.Password("dev-b") + "\n");
        var operatorPassword = Path.Combine(work, "operator.password");
        await File.WriteAllTextAsync(operatorPassword, SecureBroker.Password("operator") + "\n");

        await using var verifier = RoleProcess.Start(output, "verifier-1", null, ["verifier", "--id", "verifier-1", .. CertFlags(broker, "verifier-1"), .. Fast]);
        await verifier.WaitForAsync(" connected to ", Settle);
        var deviceEnv = new Dictionary<string, string> { ["IOTDSD_EDGE__MAXJOBS"] = "1", ["IOTDSD_EDGE__JOBINTERVALMS"] = "0" };
        await using var devA = RoleProcess.Start(output, "dev-a", deviceEnv,
            ["device", "--device-id", "dev-a", .. CertFlags(broker, "dev-a"), "--state-dir", Path.Combine(work, "a"), "--prompt-file", prompts, "--max-tokens", "40", .. Fast]);
        await using var devB = RoleProcess.Start(output, "dev-b", deviceEnv,
            ["device", "--device-id", "dev-b", "--broker", $"127.0.0.1:{broker!.PasswordPort}", "--tls-ca", Path.Combine(broker.Dir, "ca.crt"),
                "--username", "dev-b", "--password-file", passwordFile, "--state-dir", Path.Combine(work, "b"), "--prompt-file", prompts, "--max-tokens", "40", .. Fast]);

        // The operator over its client certificate: poll the one-shot JSON until every role shows its metrics, and the
        // devices have generated through the verifier.
        string[] operatorByCert = ["--broker", $"127.0.0.1:{broker.CertPort}", .. TlsFiles(broker, "operator")];
        var deadline = Stopwatch.GetTimestamp() + (long)(Settle.TotalSeconds * Stopwatch.Frequency);
        JsonElement[] rows;
        while (true)
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["diag", .. operatorByCert, "--json", "--wait-ms", "1000"]);
            Assert.True(code == 0, $"diag --json exit {code}: {stderr}");
            rows = [.. JsonDocument.Parse(stdout).RootElement.EnumerateArray()];
            if (Seen(rows, "device", "dev-a", generated: true) && Seen(rows, "device", "dev-b", generated: true) && Seen(rows, "verifier", "verifier-1", generated: true))
            {
                break;
            }

            Assert.True(Stopwatch.GetTimestamp() < deadline, $"diag never showed the fleet with metrics: {stdout}\n{verifier.Log}\n{devA.Log}\n{devB.Log}");
            await Task.Delay(500);
        }

        // Every role may publish its metrics under the ACL: nothing refused anywhere.
        foreach (var row in rows.Where(r => r.GetProperty("id").GetString() is "dev-a" or "dev-b" or "verifier-1"))
        {
            var errors = row.GetProperty("metrics").GetProperty("errors");
            Assert.False(errors.TryGetProperty(MetricsPayload.PublishRefusedKey, out _), $"{row.GetProperty("id")}: {errors}");
        }

        // The table form, as an operator reads it (a loaded machine may take more than one --wait-ms to deliver the
        // retained messages: ask again until every role is in it).
        (int Code, string Out, string Err) table;
        do
        {
            table = await CliProcess.RunAsync(null, ["diag", .. operatorByCert, "--once", "--wait-ms", "1000"]);
            Assert.True(table.Code == 0, table.Err);
            Assert.True(Stopwatch.GetTimestamp() < deadline, $"diag --once never listed the fleet: {table.Out}");
        }
        while (!new[] { "dev-a", "dev-b", "verifier-1" }.All(id => table.Out.Contains(id, StringComparison.Ordinal)));

        output.WriteLine("$ iotdsd diag --broker 127.0.0.1:PORT --tls-ca ca.crt --tls-cert operator.crt --tls-key operator.key --once");
        output.WriteLine(table.Out);

        // Pings over both listeners: the certificate one, and the operator's user name and password.
        string[] operatorByPassword =
            ["--broker", $"127.0.0.1:{broker.PasswordPort}", "--tls-ca", Path.Combine(broker.Dir, "ca.crt"), "--username", "operator", "--password-file", operatorPassword];
        foreach (var (args, id, role) in new[]
        {
            (operatorByCert, "dev-a", "device"), (operatorByPassword, "dev-b", "device"), (operatorByPassword, "verifier-1", "verifier"), (operatorByCert, "verifier-1", "verifier"),
        })
        {
            string[] target = role == "verifier" ? ["ping", id, "--verifier"] : ["ping", id];
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["diag", .. args, "--wait-ms", "10000", .. target]);
            output.WriteLine($"$ iotdsd diag ... {string.Join(' ', target)}\n{stdout}{stderr}");
            Assert.True(code == 0, $"ping {id} exit {code}: {stderr}");
            using var reply = JsonDocument.Parse(stdout);
            Assert.True(reply.RootElement.GetProperty("ok").GetBoolean());
            Assert.Equal((role, id), (reply.RootElement.GetProperty("role").GetString(), reply.RootElement.GetProperty("id").GetString()));
            Assert.Equal(0, reply.RootElement.GetProperty("publish_refused").GetInt64());
            Assert.Contains($"reply from {role} {id} in ", stderr, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("refused a publish", verifier.Log + devA.Log + devB.Log, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Diag_AsADevice_SeesNoOtherDeviceAndCannotCommandOne()
    {
        var broker = fixture.Broker;
        Skip.If(broker is null, "mosquitto is not installed");

        // Another device's retained presence and metrics, as that device publishes them, and a verifier's presence.
        await using (var other = await SecureClient.ConnectAsync(new MqttSettings { Broker = broker!.Address(broker.CertPort), ClientId = "mallory", Tls = broker.Tls("mallory") }))
        {
            var published = new[]
            {
                await other.PublishAsync(TopicScheme.DeviceStatus("mallory"), new Messaging.Presence.PresencePayload { Role = "device", Id = "mallory", Connection = 1 }.ToJson(), retain: true),
                await other.PublishAsync(TopicScheme.DeviceMetrics("mallory"), new MetricsPayload { Role = "device", Id = "mallory", Rounds = 7, TimestampMs = ProcessClock.NowMs(TimeProvider.System) }.ToJson(), retain: true),
            };
            Assert.All(published, code => Assert.True(code is MQTTnet.MqttClientPublishReasonCode.Success or MQTTnet.MqttClientPublishReasonCode.NoMatchingSubscribers, code.ToString()));
        }

        await using (var verifier = await SecureClient.ConnectAsync(new MqttSettings { Broker = broker.Address(broker.CertPort), ClientId = "verifier-2", Tls = broker.Tls("verifier-2") }))
        {
            var code = await verifier.PublishAsync(TopicScheme.VerifierStatus("verifier-2"), new Messaging.Presence.PresencePayload { Role = "verifier", Id = "verifier-2", Connection = 1 }.ToJson(), retain: true);
            Assert.True(code is MQTTnet.MqttClientPublishReasonCode.Success or MQTTnet.MqttClientPublishReasonCode.NoMatchingSubscribers, code.ToString());
        }

        // The operator sees them; dev-a's identity, running the same command, does not.
        await FleetUntilAsync(["--broker", $"127.0.0.1:{broker.CertPort}", .. TlsFiles(broker, "operator")],
            rows => rows.Any(r => r.GetProperty("id").GetString() == "mallory" && r.GetProperty("metrics").ValueKind == JsonValueKind.Object), "the operator never saw mallory's metrics");

        // dev-a sees what every client may read (verifier presence), and no device.
        var asDevice = await FleetUntilAsync(["--broker", $"127.0.0.1:{broker.CertPort}", .. TlsFiles(broker, "dev-a")],
            rows => rows.Any(r => r.GetProperty("id").GetString() == "verifier-2"), "dev-a never saw verifier-2's presence");
        Assert.DoesNotContain(asDevice, r => r.GetProperty("role").GetString() == "device");

        // Nor may it command another device: the broker refuses the publish and diag says so on one line.
        var ping = await CliProcess.RunAsync(null, ["diag", "--broker", $"127.0.0.1:{broker.CertPort}", .. TlsFiles(broker, "dev-a"), "ping", "mallory"]);
        Assert.Equal(2, ping.Code);
        var line = Assert.Single(ping.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("iotdsd diag ping: broker refused publish to 'iotdsd/v1/devices/mallory/cmd': NotAuthorized", line, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Verifier_MetricsRefusedByAcl_WarnedOnceAndCounted()
    {
        // The ACL as it was before verifiers could publish their metrics: every metrics publish of verifier-1 is refused
        // (0x87), which the verifier must say once, at Warning, and count (the operator's ping shows the count).
        await using var narrow = await SecureBroker.TryStart(acl => acl.Replace("topic write iotdsd/v1/verifiers/verifier-1/metrics\n", "", StringComparison.Ordinal));
        Skip.If(narrow is null, "mosquitto is not installed");
        Assert.DoesNotContain("verifiers/verifier-1/metrics", await File.ReadAllTextAsync(Path.Combine(narrow!.Dir, "acl")), StringComparison.Ordinal);
        await using var verifier = RoleProcess.Start(output, "verifier-1", null, ["verifier", "--id", "verifier-1", .. CertFlags(narrow, "verifier-1"), .. Fast]);
        await verifier.WaitForAsync(" connected to ", Settle);

        string[] operatorByCert = ["--broker", $"127.0.0.1:{narrow.CertPort}", .. TlsFiles(narrow, "operator")];
        var deadline = Stopwatch.GetTimestamp() + (long)(Settle.TotalSeconds * Stopwatch.Frequency);
        long refused;
        while (true)
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["diag", .. operatorByCert, "--wait-ms", "10000", "ping", "verifier-1", "--verifier"]);
            Assert.True(code == 0, $"ping exit {code}: {stderr}\n{verifier.Log}");
            refused = JsonDocument.Parse(stdout).RootElement.GetProperty("publish_refused").GetInt64();
            if (refused >= 3)
            {
                break;
            }

            Assert.True(Stopwatch.GetTimestamp() < deadline, $"only {refused} refusals counted: {verifier.Log}");
            await Task.Delay(300);
        }

        // Its metrics never reached the broker: the operator sees the verifier's presence, without metrics.
        var fleet = await FleetUntilAsync(operatorByCert, rows => rows.Any(r => r.GetProperty("id").GetString() == "verifier-1"), "the operator never saw verifier-1");
        Assert.Equal(JsonValueKind.Null, fleet.Single(r => r.GetProperty("id").GetString() == "verifier-1").GetProperty("metrics").ValueKind);

        var topic = TopicScheme.VerifierMetrics("verifier-1");
        var warnings = verifier.Lines().Where(l => l.Contains($"refused a publish to {topic}", StringComparison.Ordinal)).ToList();
        output.WriteLine($"{refused} refusals counted; log lines: {string.Join(" | ", warnings)}");
        var warning = Assert.Single(warnings);
        Assert.Contains("warn", warning, StringComparison.Ordinal);
        Assert.Contains("NotAuthorized", warning, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Connection_RefusedPublishes_OneWarningPerTopicAndEveryOneCounted()
    {
        var broker = fixture.Broker;
        Skip.If(broker is null, "mosquitto is not installed");
        var log = new ErrorLog();
        await using var mallory = new MqttConnection(
            new MqttSettings { Broker = broker!.Address(broker.CertPort), ClientId = "mallory", Tls = broker.Tls("mallory") }, _ => false, log.CreateLogger("mallory"));
        await mallory.ConnectAsync([], CancellationToken.None);
        string[] forbidden = [TopicScheme.DeviceMetrics("dev-b"), TopicScheme.VerifierStatus("verifier-1")];
        foreach (var topic in forbidden)
        {
            for (var i = 0; i < 3; i++)
            {
                var ex = await Assert.ThrowsAsync<MqttPublishException>(() => mallory.PublishRawAsync(topic, [1], retain: false, CancellationToken.None));
                Assert.Contains("NotAuthorized", ex.Message, StringComparison.Ordinal);
            }
        }

        // Permitted: its own metrics, which counts nothing.
        await mallory.PublishRawAsync(TopicScheme.DeviceMetrics("mallory"), [1], retain: false, CancellationToken.None);
        Assert.Equal(6, mallory.PublishesRefused);
        var warnings = log.Entries.Where(e => e.StartsWith("Warning", StringComparison.Ordinal) && e.Contains("refused a publish", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, warnings.Count);
        Assert.All(forbidden, topic => Assert.Single(warnings, w => w.Contains(topic, StringComparison.Ordinal)));

        var metrics = new MetricsPayload { Role = "device", Id = "mallory" }.WithPublishRefusals(mallory.PublishesRefused).WithPublishRefusals(1);
        Assert.Equal(7, metrics.Errors[MetricsPayload.PublishRefusedKey]);
    }

    [Theory]
    [InlineData("operator", "operator", "ops-2")]
    [InlineData("verifier", "verifier-1", "verifier-7")]
    public async Task CredentialsScript_AppendsTheSameRightsAsTheShippedAcl(string kind, string shipped, string added)
    {
        // credentials.sh writes the blocks for more operators and verifiers; they must grant what broker/acl grants
        // its own operator and verifier-1, or a second operator or verifier is silently refused its topics.
        var dir = Directory.CreateTempSubdirectory("iotdsd-acl-").FullName;
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(SecureBroker.RepoRoot, "broker", "credentials.sh"), kind, dir, added })
        {
            psi.ArgumentList.Add(a);
        }

        using (var process = Process.Start(psi)!)
        {
            var err = process.StandardError.ReadToEndAsync();
            await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, await err);
        }

        var acl = await File.ReadAllLinesAsync(Path.Combine(dir, "acl"));
        string[] Block(string user) => [.. acl.SkipWhile(l => l != $"user {user}").Skip(1).TakeWhile(l => l.StartsWith("topic ", StringComparison.Ordinal))];
        var expected = Block(shipped).Select(l => l.Replace(shipped, added, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.True(expected.Count >= 5, string.Join('\n', acl));
        Assert.Equal(expected, Block(added).Order(StringComparer.Ordinal));
    }

    /// <summary>Runs <c>iotdsd diag --json</c> until its rows satisfy <paramref name="done"/>.</summary>
    private static async Task<JsonElement[]> FleetUntilAsync(string[] connect, Func<JsonElement[], bool> done, string failure)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(Settle.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, ["diag", .. connect, "--json", "--wait-ms", "1000"]);
            Assert.True(code == 0, $"diag --json exit {code}: {stderr}");
            JsonElement[] rows = [.. JsonDocument.Parse(stdout).RootElement.Clone().EnumerateArray()];
            if (done(rows))
            {
                return rows;
            }

            Assert.True(Stopwatch.GetTimestamp() < deadline, $"{failure}: {stdout}");
            await Task.Delay(300);
        }
    }

    private static readonly string[] Fast = ["--metrics-interval-ms", "200", "--log-level", "Information"];

    private static string[] TlsFiles(SecureBroker broker, string identity) =>
        ["--tls-ca", Path.Combine(broker.Dir, "ca.crt"), "--tls-cert", Path.Combine(broker.Dir, identity + ".crt"), "--tls-key", Path.Combine(broker.Dir, identity + ".key")];

    private static string[] CertFlags(SecureBroker broker, string identity) => ["--broker", $"127.0.0.1:{broker.CertPort}", .. TlsFiles(broker, identity)];

    private static bool Seen(JsonElement[] rows, string role, string id, bool generated) => rows.Any(r =>
        r.GetProperty("role").GetString() == role && r.GetProperty("id").GetString() == id && r.GetProperty("state").GetString() == "online"
        && r.GetProperty("metrics") is { ValueKind: JsonValueKind.Object } m && (!generated || m.GetProperty("rounds").GetInt64() > 0));

    /// <summary>A role as a real <c>iotdsd</c> process, its stderr kept; killed on dispose.</summary>
    private sealed class RoleProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _log = new();
        private readonly ITestOutputHelper _output;
        private readonly string _name;

        private RoleProcess(Process process, ITestOutputHelper output, string name)
        {
            _process = process;
            _output = output;
            _name = name;
            process.ErrorDataReceived += (_, e) =>
            {
                lock (_log)
                {
                    _log.AppendLine(e.Data);
                }
            };
            process.BeginErrorReadLine();
            _ = process.StandardOutput.ReadToEndAsync();
        }

        public string Log
        {
            get
            {
                lock (_log)
                {
                    return _log.ToString();
                }
            }
        }

        public IReadOnlyList<string> Lines() => Log.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        public static RoleProcess Start(ITestOutputHelper output, string name, IReadOnlyDictionary<string, string>? environment, string[] args) =>
            new(CliProcess.Start(environment, args), output, name);

        public async Task WaitForAsync(string text, TimeSpan timeout)
        {
            var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
            while (!Log.Contains(text, StringComparison.Ordinal))
            {
                Assert.False(_process.HasExited, $"{_name} exited with {(_process.HasExited ? _process.ExitCode : 0)}: {Log}");
                Assert.True(Stopwatch.GetTimestamp() < deadline, $"{_name} never logged '{text}': {Log}");
                await Task.Delay(100);
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _output.WriteLine($"--- {_name} ---\n{Log}");
            _process.Dispose();
        }
    }
}

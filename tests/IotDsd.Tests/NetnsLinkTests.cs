using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Real link cuts: an <c>iotdsd edge</c> process inside a network namespace reaches Mosquitto on the host only through
/// a veth pair whose host end is set down and up mid-generation. They need root and a kernel that allows namespaces;
/// elsewhere they are skipped with the reason, unless IOTDSD_REQUIRE_NETNS=1 (as in CI) makes that a failure.
/// </summary>
public sealed class NetnsLinkTests(ITestOutputHelper output)
{
    private static bool Required => Environment.GetEnvironmentVariable("IOTDSD_REQUIRE_NETNS") == "1";

    private static async Task<NetnsLink> CreateOrSkipAsync()
    {
        try
        {
            return await NetnsLink.CreateAsync();
        }
        catch (NetnsUnavailableException ex) when (!Required)
        {
            throw new SkipException($"no network namespace here: {ex.Message} (IOTDSD_REQUIRE_NETNS=1 makes this a failure)");
        }
    }

    [SkippableFact]
    public async Task CreateAsync_CutRateRestoreDispose_KernelStateFollowsAndNothingIsLeft()
    {
        var link = await CreateOrSkipAsync();
        string hostDevice = link.HostDevice, ns = link.Namespace;
        try
        {
            Assert.Contains(link.DeviceAddress.ToString(), await RunAsync([.. link.ExecPrefix, "ip", "-4", "-o", "addr", "show", link.DeviceSideDevice]));
            Assert.Contains("state UP", await RunAsync(["ip", "link", "show", hostDevice]));
            await link.CutAsync();
            Assert.Contains("state DOWN", await RunAsync(["ip", "link", "show", hostDevice]));
            Assert.Contains("NO-CARRIER", await RunAsync(["ip", "-n", ns, "link", "show", link.DeviceSideDevice]));
            await link.RestoreAsync();
            Assert.DoesNotContain("state DOWN", await RunAsync(["ip", "link", "show", hostDevice]));
            await link.SetRateAsync(100_000, 50_000);
            Assert.Contains("tbf", await RunAsync(["tc", "qdisc", "show", "dev", hostDevice]));
            Assert.Contains("tbf", await RunAsync(["tc", "-n", ns, "qdisc", "show", "dev", link.DeviceSideDevice]));
            await link.SetRateAsync(0, 0);
            Assert.DoesNotContain("tbf", await RunAsync(["tc", "qdisc", "show", "dev", hostDevice]));
            Assert.Equal(1, link.Cuts);
        }
        finally
        {
            await link.DisposeAsync();
        }

        Assert.False(await link.ExistsAsync(), $"namespace {ns} left behind");
        Assert.DoesNotContain(hostDevice, await RunAsync(["ip", "-o", "link", "show"]));
    }

    [Fact]
    public async Task CreateAsync_NoIpBinary_SaysWhatIsMissing()
    {
        var ex = await Assert.ThrowsAsync<NetnsUnavailableException>(() => NetnsLink.CreateAsync(ipPath: "/nonexistent/ip"));
        Assert.True(ex.Message.Contains("iproute2", StringComparison.Ordinal) || ex.Message.Contains("root", StringComparison.Ordinal) || ex.Message.Contains("Linux", StringComparison.Ordinal), ex.Message);
    }

    [SkippableFact]
    public async Task NetnsCommand_RunsCommandInsideAndPassesExitCode_RemovesNamespace()
    {
        await using (var probe = await CreateOrSkipAsync())
        {
        }

        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "netns", "--", "sh", "-c", "ip -4 -o addr; echo host={host}; exit 3");
        Assert.True(code == 3, stderr);
        Assert.Contains("inet 10.213.", stdout);
        Assert.Matches(@"host=10\.213\.\d+\.\d+", stdout);
        var ns = System.Text.RegularExpressions.Regex.Match(stderr, @"namespace (iotdsd-\d+-\d+)").Groups[1].Value;
        Assert.NotEmpty(ns);
        Assert.DoesNotContain(ns, await RunAsync(["ip", "netns", "list"]));
    }

    [SkippableTheory]
    [InlineData("greedy", "0")]
    [InlineData("rsr", "0.8")]
    public async Task EdgeInNamespace_RealLinkCuts_TextEqualsFaultFreeRun(string mode, string temperature)
    {
        const int tokens = 800;

        // Two short cuts that TCP rides out, and one long enough for the device to declare the link dead and reconnect.
        int[] cutMillis = [2000, 2000, 8000];
        var cuts = cutMillis.Length;
        await using var link = await CreateOrSkipAsync();
        var port = EmbeddedBroker.FreePort();
        await using var mosquitto = await MosquittoProcess.TryStart($"listener {port} {link.HostAddress}");
        var log = new ErrorLog();
        using var reference = await FaultRig.StartVerifierAsync(mosquitto.Port, $"nsref-{mode}", log);
        using var verifier = await FaultRig.StartVerifierAsync(mosquitto.Port, $"ns-{mode}", log);
        var root = Directory.CreateTempSubdirectory("iotdsd-netns-").FullName;
        try
        {
            string[] Args(string broker, string verifierId, string dir) =>
            [
                "edge", "--pair", "ngram", "--broker", broker, "--device-id", $"netns-{mode}", "--verifier", verifierId, "--prompt", "Once upon a time",
                "--max-tokens", $"{tokens}", "--mode", mode, "--temperature", temperature, "--seed", "11", "--json",
                "--state-dir", dir, "--request-timeout-ms", "1000", "--insecure-plaintext",
            ];

            // The fault-free run: the same device on the host, straight to the broker.
            string referenceText;
            await using (var clean = IotdsdProcess.Start(Args($"127.0.0.1:{mosquitto.Port}", $"nsref-{mode}", Path.Combine(root, "ref"))))
            {
                await clean.WaitForExitAsync(TimeSpan.FromSeconds(60));
                Assert.True(clean.ExitCode == 0, clean.Stderr);
                referenceText = Json(clean.Stdout).GetProperty("text").GetString()!;
            }

            var dir = Path.Combine(root, "cut");
            await using var device = IotdsdProcess.StartWrapped(link.ExecPrefix, Args($"{link.HostAddress}:{port}", $"ns-{mode}", dir));
            var recoveries = new List<double>();
            for (var i = 0; i < cuts; i++)
            {
                // Cuts are placed by progress, so each lands mid-generation however fast the machine is.
                await WaitForAsync(() => SavedSessions.CommittedTokens(dir) >= (i + 1) * tokens / (cuts + 2), device);
                await link.CutAsync();
                await Task.Delay(300);
                var stalledAt = SavedSessions.CommittedTokens(dir);
                await Task.Delay(cutMillis[i] - 300);
                var atRestore = SavedSessions.CommittedTokens(dir);
                Assert.True(stalledAt == atRestore, $"tokens were committed through a cut link ({stalledAt} -> {atRestore})");
                var restored = Stopwatch.GetTimestamp();
                await link.RestoreAsync();
                await WaitForAsync(() => SavedSessions.CommittedTokens(dir) is not { } n || n > atRestore, device, allowExit: true);
                recoveries.Add(Stopwatch.GetElapsedTime(restored).TotalMilliseconds);
            }

            await device.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(device.ExitCode == 0, device.Stderr);
            var result = Json(device.Stdout);
            Assert.Equal(referenceText, result.GetProperty("text").GetString());
            Assert.Equal(tokens, result.GetProperty("tokens").GetInt32()); // none lost, none duplicated
            Assert.Equal(cuts, link.Cuts);
            Assert.Empty(log.Errors);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{mode}: {tokens} tokens, veth cuts of {string.Join("/", cutMillis)} ms; restore -> next committed token (ms): {string.Join(", ", recoveries.Select(r => r.ToString("0", CultureInfo.InvariantCulture)))}; "
                + $"device: link drops {result.GetProperty("link_drops").GetInt64()}, retries {result.GetProperty("retries").GetInt64()}, reconnect -> next token (ms) [{string.Join(", ", result.GetProperty("recovery_ms").EnumerateArray().Select(e => e.GetDouble().ToString("0", CultureInfo.InvariantCulture)))}]"));
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
            await reference.StopAsync(CancellationToken.None);
            Directory.Delete(root, recursive: true);
        }
    }

    private static JsonElement Json(string stdout)
    {
        using var doc = JsonDocument.Parse(stdout.Trim());
        return doc.RootElement.Clone();
    }

    private static async Task WaitForAsync(Func<bool> condition, IotdsdProcess process, bool allowExit = false)
    {
        var deadline = Stopwatch.GetTimestamp() + (60 * Stopwatch.Frequency);
        while (!condition())
        {
            Assert.True(allowExit || !process.HasExited, $"the device exited early: {process.Stderr}");
            Assert.True(Stopwatch.GetTimestamp() < deadline, $"no progress within 60 s: {process.Stderr}");
            await Task.Delay(5);
        }
    }

    private static async Task<string> RunAsync(IReadOnlyList<string> argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return await stdout + await stderr;
    }
}

using IotDsd.Tests.Infrastructure;
using System.Diagnostics;
using System.Runtime.Versioning;

namespace IotDsd.Tests;

/// <summary>
/// The install steps of devices/README.md, run as written: <c>devices/install.sh</c> into a scratch root (DESTDIR)
/// with the build of <c>iotdsd</c> standing in for the published one. The installed example settings must pass the
/// role's <c>--check-config</c> as shipped, and the installed units <c>systemd-analyze verify</c> where systemd's tools
/// are installed (skipped with the reason where they are not).
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class InstallTests : IDisposable
{
    private static readonly string Repo = Repository.Root;
    private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-install-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static bool HasSystemdAnalyze => File.Exists("/usr/bin/systemd-analyze") || File.Exists("/bin/systemd-analyze");

    [SkippableTheory]
    [InlineData("edge", "edge.json", "iotdsd-edge.service")]
    [InlineData("verifier", "verifier.json", "iotdsd-verifier.service")]
    public async Task Install_AsShipped_ChecksSettingsAndUnit(string role, string config, string unit)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "install.sh installs a systemd service: Linux only");
        var (code, output) = await InstallAsync(Path.Combine(Repo, "devices"), role);

        Assert.True(code == 0, output);
        Assert.Contains($"settings checked: {_root}/etc/iotdsd/{config} passes", output, StringComparison.Ordinal);
        Assert.Contains(HasSystemdAnalyze ? $"unit checked: systemd-analyze verify {unit}" : "unit not checked", output, StringComparison.Ordinal);
        Assert.Contains("nothing enabled", output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_root, "opt/iotdsd/iotdsd")));
        Assert.True(File.Exists(Path.Combine(_root, "etc/systemd/system", unit)));
        Assert.Equal(File.ReadAllText(Path.Combine(Repo, "devices", config)), File.ReadAllText(Path.Combine(_root, "etc/iotdsd", config)));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_root, "etc/iotdsd/mqtt-password")));

        // The installed program accepts the installed settings on its own too (the README's check after editing).
        var check = await Repository.RunAsync(Path.Combine(_root, "opt/iotdsd/iotdsd"), [role == "edge" ? "device" : "verifier", "--config", Path.Combine(_root, "etc/iotdsd", config),
            "--check-config", .. role == "edge" ? new[] { "--prompt-file", Path.Combine(_root, "etc/iotdsd/prompts.txt") } : []], null);
        Assert.True(check.Code == 0, check.Output);
        Assert.Contains("Mqtt:Broker", check.Output, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Install_EditedSettings_KeptAndCheckedAgain()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "install.sh installs a systemd service: Linux only");
        var devices = Path.Combine(Repo, "devices");
        Assert.Equal(0, (await InstallAsync(devices, "edge")).Code);
        var settings = Path.Combine(_root, "etc/iotdsd/edge.json");

        // A broker elsewhere without TLS: the check refuses, naming the setting, and the script names the file.
        File.WriteAllText(settings, File.ReadAllText(settings).Replace("\"Broker\": \"127.0.0.1:1883\"", "\"Broker\": \"192.0.2.10:1883\"", StringComparison.Ordinal));
        var (code, output) = await InstallAsync(devices, "edge");
        Assert.Equal(2, code);
        Assert.Contains("Mqtt:InsecurePlaintext", output, StringComparison.Ordinal);
        Assert.Contains($"{_root}/etc/iotdsd/edge.json", output, StringComparison.Ordinal);
        Assert.DoesNotContain("unit checked", output, StringComparison.Ordinal);

        // Fixed: the rerun keeps the edited file (never overwritten) and passes.
        File.WriteAllText(settings, File.ReadAllText(settings).Replace("\"Broker\": \"192.0.2.10:1883\"", "\"Broker\": \"192.0.2.10:1883\", \"InsecurePlaintext\": true", StringComparison.Ordinal));
        (code, output) = await InstallAsync(devices, "edge");
        Assert.True(code == 0, output);
        Assert.Contains("192.0.2.10:1883", File.ReadAllText(settings), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Install_UnitWithUnknownKey_FailsOnSystemdAnalyze()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "install.sh installs a systemd service: Linux only");
        Skip.IfNot(HasSystemdAnalyze, "systemd-analyze is not installed (package systemd)");

        // A copy of devices/ whose unit carries a key systemd does not know: systemd-analyze only warns (exit 0), the
        // script must still stop.
        var devices = Directory.CreateTempSubdirectory("iotdsd-devices-").FullName;
        try
        {
            foreach (var file in Directory.GetFiles(Path.Combine(Repo, "devices")))
            {
                File.Copy(file, Path.Combine(devices, Path.GetFileName(file)));
            }

            var unit = Path.Combine(devices, "iotdsd-verifier.service");
            File.WriteAllText(unit, File.ReadAllText(unit).Replace("Restart=on-failure", "Restart=on-failure\nRestartSteps=sometimes", StringComparison.Ordinal));
            var (code, output) = await InstallAsync(devices, "verifier");
            Assert.Equal(1, code);
            Assert.Contains("RestartSteps", output, StringComparison.Ordinal);
            Assert.Contains("systemd-analyze verify found the problems above in iotdsd-verifier.service", output, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(devices, recursive: true);
        }
    }

    private Task<(int Code, string Output)> InstallAsync(string devices, string role) =>
        Repository.RunAsync("bash", [Path.Combine(devices, "install.sh"), role, CliBuild()], new Dictionary<string, string> { ["DESTDIR"] = _root });

    /// <summary>The build output of IotDsd.Cli in this test run's configuration: the executable and its libraries.</summary>
    private static string CliBuild()
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name; // .../bin/<Configuration>/net10.0/
        var dir = Path.Combine(Repo, "src/IotDsd.Cli/bin", configuration, "net10.0");
        Assert.True(File.Exists(Path.Combine(dir, "iotdsd")), $"no iotdsd executable in {dir}: build IotDsd.Cli first");
        return dir;
    }
}

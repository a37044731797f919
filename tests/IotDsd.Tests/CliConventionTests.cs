using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using IotDsd.Cli.Commands;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// One convention for options across every command: an on/off option is a flag (<c>--tls</c>; <c>--tls false</c> also
/// parses) that never swallows the next option; and every role fails on bad local resources (a port in use, a missing,
/// unreadable or malformed certificate, an unreadable settings file) with one line naming the option or file, exit 2.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CliConventionTests(ITestOutputHelper output)
{
    private static IEnumerable<(string[] Path, Command Command, IReadOnlyList<Option> Options)> Walk(RootCommand root)
    {
        var stack = new Stack<(string[] Path, Command Command, List<Option> Inherited)>();
        stack.Push(([], root, []));
        while (stack.Count > 0)
        {
            var (path, command, inherited) = stack.Pop();
            var options = command.Options.Concat(inherited).ToList();
            yield return (path, command, options);
            foreach (var sub in command.Subcommands)
            {
                stack.Push(([.. path, sub.Name], sub, [.. inherited, .. command.Options.Where(o => o.Recursive)]));
            }
        }
    }

    [Fact]
    public void EveryCommand_EveryBooleanIsAFlag_InHelpAndWhenParsed()
    {
        var root = CliRoot.Create();
        var commands = 0;
        var booleans = 0;
        foreach (var (path, command, options) in Walk(root))
        {
            commands++;
            using var help = new StringWriter();
            var code = root.Parse([.. path, "--help"]).Invoke(new InvocationConfiguration { Output = help });
            Assert.Equal(0, code);
            var lines = help.ToString().Split('\n');
            var where = "iotdsd " + string.Join(' ', path);
            foreach (var option in options.Where(o => o.Name != "--help" && o.Name != "--version" && !o.Hidden))
            {
                var line = lines.FirstOrDefault(l => Regex.IsMatch(l, $@"^\s+(\S+, )*{Regex.Escape(option.Name)}(\s|,|$)"));
                Assert.True(line is not null, $"{where} --help does not list {option.Name}:\n{help}");
                if (option.ValueType == typeof(bool))
                {
                    booleans++;
                    Assert.True(option.Arity.MinimumNumberOfValues == 0, $"{where} {option.Name} needs a value");
                    Assert.False(line!.Contains(option.Name + " <", StringComparison.Ordinal) || line.Contains(option.Name + " [<", StringComparison.Ordinal), $"{where} --help shows a value for the flag {option.Name}: {line}");

                    // Given alone, it is on; followed by another option, it does not take that option as its value.
                    var alone = root.Parse([.. path, option.Name, "--help"]);
                    Assert.Empty(alone.UnmatchedTokens);
                    Assert.True(alone.GetValue((Option<bool>)option), $"{where} {option.Name} --help: the flag is not on");
                    var explicitOff = root.Parse([.. path, option.Name, "false"]);
                    Assert.Empty(explicitOff.UnmatchedTokens);
                    Assert.False(explicitOff.GetValue((Option<bool>)option), $"{where} {option.Name} false: the flag is still on");
                }
                else
                {
                    // An on/off setting spelled as a valued option is the mistake this convention rules out.
                    var description = option.Description ?? "";
                    Assert.False(
                        description.Contains("Default: true.", StringComparison.Ordinal) || description.Contains("Default: false.", StringComparison.Ordinal)
                            || description.Contains("true or false", StringComparison.OrdinalIgnoreCase),
                        $"{where} {option.Name} is an on/off option that takes a value: {description}");
                }
            }
        }

        output.WriteLine($"{commands} commands, {booleans} boolean options checked");
        Assert.True(commands >= 20 && booleans >= 20, $"{commands} commands, {booleans} booleans: the walk did not reach the tree");
    }

    [Fact]
    public async Task Device_InsecurePlaintextThenCheckConfig_BothTakenAsFlags()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "device", "--broker", "192.0.2.10:1883", "--insecure-plaintext", "--check-config");
        Assert.True(code == 0, stderr);
        Assert.Matches(@"Mqtt:InsecurePlaintext\s+true\s+\[flag --insecure-plaintext\]", stdout);

        var off = await CliProcess.RunAsync(null, "device", "--broker", "192.0.2.10:1883", "--tls", "--tls", "false", "--insecure-plaintext", "true", "--check-config");
        Assert.True(off.Code == 0, off.Err);
        Assert.Matches(@"Mqtt:Tls\s+false\s+\[flag --tls\]", off.Out);
    }

    [Theory]
    [InlineData("verifier")]
    [InlineData("device")]
    public async Task Role_RemoteBrokerWithoutTls_ErrorNamesTheFlagThatWorks(string role)
    {
        var (code, _, stderr) = await CliProcess.RunAsync(null, role, "--broker", "192.0.2.10:1883", "--check-config");
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("the flag --insecure-plaintext", line, StringComparison.Ordinal);
        Assert.Contains("IOTDSD_MQTT__INSECUREPLAINTEXT=true", line, StringComparison.Ordinal);

        // The spelling the error gives is the one that is accepted.
        var fixedRun = await CliProcess.RunAsync(null, role, "--broker", "192.0.2.10:1883", "--check-config", "--insecure-plaintext");
        Assert.True(fixedRun.Code == 0, fixedRun.Err);
        var env = await CliProcess.RunAsync(new Dictionary<string, string> { ["IOTDSD_MQTT__INSECUREPLAINTEXT"] = "true" }, role, "--broker", "192.0.2.10:1883", "--check-config");
        Assert.True(env.Code == 0, env.Err);
    }

    [Fact]
    public async Task DiagSubcommand_ErrorsCarryTheFullCommand()
    {
        var (code, _, stderr) = await CliProcess.RunAsync(null, "diag", "--broker", "127.0.0.1:1", "--wait-ms", "0", "ping", "dev-a");
        Assert.Equal(2, code);
        Assert.Equal("iotdsd diag ping: --wait-ms must be positive, got 0", stderr.Trim());
        var parse = await CliProcess.RunAsync(null, "diag", "ping");
        Assert.Equal(2, parse.Code);
        Assert.StartsWith("iotdsd diag ping: ", parse.Err, StringComparison.Ordinal);
        Assert.Contains("(see iotdsd diag ping --help)", parse.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("broker", "--port")]
    [InlineData("link", "--listen")]
    public async Task PortInUse_OneLineNamingTheOption_Exit2(string command, string option)
    {
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string[] args = command == "broker" ? ["broker", "--port", port] : ["link", "--listen", port, "--upstream", "127.0.0.1:1883"];
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, args);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"iotdsd {command}: {option}: cannot listen on 127.0.0.1:{port}", line, StringComparison.Ordinal);
        Assert.Contains("in use", line, StringComparison.Ordinal);
    }

    public static readonly TheoryData<string, string, string> BadCertificates = new()
    {
        { "verifier", "--tls-ca", "missing" },
        { "verifier", "--tls-cert", "not PEM" },
        { "device", "--tls-ca", "directory" },
        { "device", "--tls-cert", "missing" },
        { "device", "--tls-key", "not PEM" },
        { "diag", "--tls-ca", "not PEM" },
        { "diag", "--tls-cert", "missing" },
    };

    [Theory]
    [MemberData(nameof(BadCertificates))]
    public async Task BadCertificate_OneLineNamingFileAndOption_Exit2(string role, string option, string fault)
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-certs-").FullName;
        var good = await DevelopmentCertificatesAsync(dir);
        var bad = fault switch
        {
            "missing" => Path.Combine(dir, "nothing-here.pem"),
            "directory" => dir,
            _ => Path.Combine(dir, "garbage.pem"),
        };
        await File.WriteAllTextAsync(Path.Combine(dir, "garbage.pem"), "this is not a certificate\n");
        var files = new Dictionary<string, string> { ["--tls-ca"] = good.Ca, ["--tls-cert"] = good.Cert, ["--tls-key"] = good.Key };
        files[option] = bad;
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, RoleArgs(role, files));
        output.WriteLine(stderr);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"'{bad}'", line, StringComparison.Ordinal);
        Assert.Contains(option, line, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData("verifier", "--config")]
    [InlineData("device", "--config")]
    [InlineData("verifier", "--tls-ca")]
    [InlineData("device", "--tls-cert")]
    [InlineData("diag", "--tls-key")]
    [InlineData("diag", "--password-file")]
    [InlineData("device", "--password-file")]
    [InlineData("device", "--prompt-file")]
    public async Task UnreadableFile_OneLineNamingIt_Exit2(string role, string option)
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-unreadable-").FullName;
        var good = await DevelopmentCertificatesAsync(dir);
        var unreadable = Path.Combine(dir, option == "--config" ? "settings.json" : "locked.pem");
        await File.WriteAllTextAsync(unreadable, option switch
        {
            "--config" => "{}",
            "--tls-key" => await File.ReadAllTextAsync(good.Key),
            "--tls-cert" or "--tls-ca" => await File.ReadAllTextAsync(good.Cert),
            _ => "secret or prompt\n",
        });
        File.SetUnixFileMode(unreadable, UnixFileMode.None);
        foreach (var path in new[] { dir, good.Ca, good.Cert, good.Key })
        {
            File.SetUnixFileMode(path, File.GetUnixFileMode(path) | UnixFileMode.OtherRead | (Directory.Exists(path) ? UnixFileMode.OtherExecute : 0));
        }

        var files = new Dictionary<string, string> { ["--tls-ca"] = good.Ca, ["--tls-cert"] = good.Cert, ["--tls-key"] = good.Key };
        string[] args = option switch
        {
            "--config" => [role, "--config", unreadable, "--check-config"],
            "--password-file" or "--prompt-file" => [.. RoleArgs(role, files), "--username", "operator", option, unreadable],
            _ => RoleArgs(role, new(files) { [option] = unreadable }),
        };
        var (code, stdout, stderr) = await RunUnprivilegedAsync(args);
        output.WriteLine(stderr);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"'{unreadable}'", line, StringComparison.Ordinal);
        Assert.Contains("cannot be read: ", line, StringComparison.Ordinal);
        Assert.Contains(option == "--config" ? "fix its permissions, --config or IOTDSD_CONFIG" : option, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConfigFileIsADirectory_OneLine_Exit2()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-config-").FullName;
        var (code, _, stderr) = await CliProcess.RunAsync(null, "verifier", "--config", dir, "--check-config");
        Assert.Equal(2, code);
        Assert.Equal($"iotdsd verifier: config file '{dir}' is a directory, not a JSON file; fix --config or IOTDSD_CONFIG", stderr.Trim());
    }

    private static string[] RoleArgs(string role, Dictionary<string, string> files)
    {
        string[] tls = ["--tls-ca", files["--tls-ca"], "--tls-cert", files["--tls-cert"], "--tls-key", files["--tls-key"]];
        return role == "diag"
            ? ["diag", "--broker", "127.0.0.1:1", "--once", .. tls]
            : [role, "--broker", "127.0.0.1:1", .. tls, "--check-config"];
    }

    /// <summary>A CA and a client certificate made by <c>broker/credentials.sh</c>.</summary>
    private static async Task<(string Ca, string Cert, string Key)> DevelopmentCertificatesAsync(string dir)
    {
        var script = Path.Combine(Security.SecureBroker.RepoRoot, "broker", "credentials.sh");
        foreach (var args in new[] { new[] { "ca", dir }, ["client", dir, "dev-a"] })
        {
            var (code, err) = await RunAsync("bash", [script, .. args]);
            Assert.True(code == 0, err);
        }

        return (Path.Combine(dir, "ca.crt"), Path.Combine(dir, "dev-a.crt"), Path.Combine(dir, "dev-a.key"));
    }

    /// <summary>Runs the CLI where file permissions apply: as this user, or as nobody when this is root (root reads anything).</summary>
    private static async Task<(int Code, string Out, string Err)> RunUnprivilegedAsync(string[] args)
    {
        if (Environment.UserName != "root")
        {
            return await CliProcess.RunAsync(null, args);
        }

        Skip.If(!File.Exists("/usr/bin/setpriv"), "running as root, and without setpriv there is no unprivileged user to run as");
        var home = Directory.CreateTempSubdirectory("iotdsd-nobody-").FullName;
        File.SetUnixFileMode(home, (UnixFileMode)0x1FF);
        var dll = Path.Combine(AppContext.BaseDirectory, "iotdsd.dll");
        string[] asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "env", $"HOME={home}", $"DOTNET_CLI_HOME={home}", "DOTNET_NOLOGO=1"];
        var (reach, _) = await RunAsync("/usr/bin/setpriv", [.. asNobody, "test", "-r", dll]);
        Skip.If(reach != 0, $"running as root, and user nobody cannot read {dll} (a private checkout): permissions cannot be tested here");
        var psi = new ProcessStartInfo("/usr/bin/setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])[.. asNobody, "dotnet", dll, .. args])
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (process.ExitCode, await stdout, await stderr);
    }

    private static async Task<(int Code, string Err)> RunAsync(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stderr);
    }
}

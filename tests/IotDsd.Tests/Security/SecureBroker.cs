using System.Diagnostics;
using System.Net.Sockets;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests.Security;

/// <summary>
/// A real Mosquitto running the project's production profile (<c>broker/mosquitto-prod.conf</c> with
/// <c>broker/acl</c>), on free loopback ports, with credentials made by <c>broker/credentials.sh</c> in a temporary
/// directory: a CA, a broker certificate, client certificates and passwords for <see cref="Identities"/>.
/// </summary>
public sealed class SecureBroker : IAsyncDisposable
{
    public static readonly string[] Identities = ["dev-a", "dev-b", "mallory", "verifier-1", "verifier-2", "operator"];

    private readonly Process _process;

    private readonly bool _ownsDir;

    private SecureBroker(Process process, string dir, int certPort, int passwordPort, bool ownsDir)
    {
        _process = process;
        _ownsDir = ownsDir;
        Dir = dir;
        CertPort = certPort;
        PasswordPort = passwordPort;
    }

    /// <summary>Where the credentials lie.</summary>
    public string Dir { get; }

    /// <summary>Listener that requires a client certificate (identity = CN).</summary>
    public int CertPort { get; }

    /// <summary>Listener that takes a user name and password over TLS.</summary>
    public int PasswordPort { get; }

    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "IotDsd.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("IotDsd.sln not found above the test binaries");
        }
    }

    public static string Password(string identity) => $"pw-{identity}-secret";

    public BrokerAddress Address(int port) => new("127.0.0.1", port);

    /// <summary>TLS with the development CA; with <paramref name="identity"/>'s client certificate when given.</summary>
    public MqttTlsSettings Tls(string? identity = null) => new()
    {
        CaFile = Path.Combine(Dir, "ca.crt"),
        CertFile = identity is null ? null : Path.Combine(Dir, identity + ".crt"),
        KeyFile = identity is null ? null : Path.Combine(Dir, identity + ".key"),
    };

    /// <summary>Starts the broker; <paramref name="editAcl"/>, when given, rewrites the installed ACL first (an older or
    /// narrower profile).</summary>
    public static async Task<SecureBroker?> TryStart(Func<string, string>? editAcl = null)
    {
        if (MosquittoProcess.Binary is not { } binary)
        {
            Assert.False(MosquittoProcess.Required, "IOTDSD_REQUIRE_MOSQUITTO=1 but no mosquitto binary was found (apt-get install mosquitto)");
            return null;
        }

        var dir = Directory.CreateTempSubdirectory("iotdsd-secure-").FullName;
        var script = Path.Combine(RepoRoot, "broker", "credentials.sh");
        await RunAsync(script, "ca", dir);
        foreach (var id in Identities)
        {
            await RunAsync(script, "client", dir, id);
            await RunAsync(script, new Dictionary<string, string> { ["IOTDSD_NEW_PASSWORD"] = Password(id) }, "password", dir, id);
        }

        await RunAsync(script, "verifier", dir, "verifier-2");
        if (editAcl is not null)
        {
            var acl = Path.Combine(dir, "acl");
            await File.WriteAllTextAsync(acl, editAcl(await File.ReadAllTextAsync(acl)));
        }

        return await StartProfileAsync(binary, dir);
    }

    /// <summary>
    /// Starts Mosquitto with <c>broker/mosquitto-prod.conf</c> as shipped, its <c>/etc/mosquitto/iotdsd/</c> pointed at
    /// <paramref name="dir"/> and its listeners moved to free loopback ports; fails if it exits instead of listening.
    /// Disposing the broker deletes <paramref name="dir"/> when <paramref name="ownsDir"/>.
    /// </summary>
    public static async Task<SecureBroker> StartProfileAsync(string binary, string dir, bool ownsDir = true)
    {
        var certPort = EmbeddedBroker.FreePort();
        var passwordPort = EmbeddedBroker.FreePort();
        var config = (await File.ReadAllTextAsync(Path.Combine(RepoRoot, "broker", "mosquitto-prod.conf")))
            .Replace("/etc/mosquitto/iotdsd/", dir + "/", StringComparison.Ordinal)
            .Replace("listener 8883", $"listener {certPort} 127.0.0.1", StringComparison.Ordinal)
            .Replace("listener 8884", $"listener {passwordPort} 127.0.0.1", StringComparison.Ordinal)
            .Replace("persistence true", "persistence false", StringComparison.Ordinal)
            .Replace("log_type notice", "", StringComparison.Ordinal);
        // As root, Mosquitto drops to user mosquitto, which cannot read the 0600 credentials made here.
        config = "user root\n" + config;
        var path = Path.Combine(dir, "mosquitto.conf");
        await File.WriteAllTextAsync(path, config);
        var process = Process.Start(new ProcessStartInfo(binary, ["-c", path]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })!;
        var log = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            lock (log)
            {
                log.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (process.HasExited)
            {
                await process.WaitForExitAsync();
                lock (log)
                {
                    Assert.Fail($"mosquitto exited with the production profile (code {process.ExitCode}): {log.ToString().Trim()}");
                }
            }

            try
            {
                using var a = new TcpClient();
                await a.ConnectAsync("127.0.0.1", certPort);
                using var b = new TcpClient();
                await b.ConnectAsync("127.0.0.1", passwordPort);
                return new SecureBroker(process, dir, certPort, passwordPort, ownsDir);
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        process.Kill();
        throw new TimeoutException("mosquitto with the production profile did not listen within 10 s");
    }

    /// <summary>Runs <c>broker/credentials.sh</c> with <paramref name="args"/>; fails on a non-zero exit.</summary>
    public static Task CredentialsAsync(params string[] args) => RunAsync(Path.Combine(RepoRoot, "broker", "credentials.sh"), [], args);

    /// <inheritdoc cref="CredentialsAsync(string[])"/>
    public static Task CredentialsAsync(Dictionary<string, string> env, params string[] args) => RunAsync(Path.Combine(RepoRoot, "broker", "credentials.sh"), env, args);

    private static Task RunAsync(string script, params string[] args) => RunAsync(script, [], args);

    private static async Task RunAsync(string script, Dictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo("bash", [script, .. args]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var (k, v) in env)
        {
            info.Environment[k] = v;
        }

        using var p = Process.Start(info)!;
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"credentials.sh {string.Join(' ', args)} failed: {await stderr}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        if (!_ownsDir)
        {
            return;
        }

        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

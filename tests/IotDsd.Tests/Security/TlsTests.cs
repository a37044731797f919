using System.Diagnostics;
using IotDsd.Messaging.Connections;
using IotDsd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace IotDsd.Tests.Security;

/// <summary>TLS against the production-profile Mosquitto: what must connect does, and what must not is refused.</summary>
public sealed class TlsTests(SecureBrokerFixture fixture, ITestOutputHelper output) : IClassFixture<SecureBrokerFixture>
{
    [SkippableFact]
    public async Task Pipeline_ClientCertificatesAndPasswordsOverTls_GreedyMatchesReference()
    {
        var broker = fixture.RequireBroker();

        await using var secure = await SecurePipeline.StartAsync(broker);
        const string prompt = "Once upon a time";
        var byCert = await secure.GenerateAsync("dev-a", prompt, 150, "cert-session");
        var byPassword = await secure.GenerateAsync("dev-b", prompt, 150, "password-session", password: true);
        var reference = secure.Reference(prompt, 150);
        Assert.Equal(reference, byCert.Tokens);
        Assert.Equal(reference, byPassword.Tokens);
        Assert.Empty(secure.Log.Errors);
    }

    public static readonly TheoryData<string> Refusals = new()
    {
        "CA that did not sign the broker",
        "broker name not in its certificate",
        "no client certificate on the certificate listener",
        "wrong password",
        "no credentials",
        "plain TCP to a TLS listener",
    };

    [SkippableTheory]
    [MemberData(nameof(Refusals))]
    public async Task Connect_BadTlsOrCredentials_RefusedWithClearError(string scenario)
    {
        var broker = fixture.RequireBroker();

        var cert = broker.Address(broker.CertPort);
        var password = broker.Address(broker.PasswordPort);
        var settings = scenario switch
        {
            "CA that did not sign the broker" => new MqttSettings { Broker = cert, ClientId = "dev-a", Tls = broker.Tls("dev-a") with { CaFile = await OtherCaAsync() } },
            "broker name not in its certificate" => new MqttSettings { Broker = cert, ClientId = "dev-a", Tls = broker.Tls("dev-a") with { ServerName = "broker.example.net" } },
            "no client certificate on the certificate listener" => new MqttSettings { Broker = cert, ClientId = "dev-a", Tls = broker.Tls() },
            "wrong password" => new MqttSettings { Broker = password, ClientId = "dev-a", Username = "dev-a", Password = "guess", Tls = broker.Tls() },
            "no credentials" => new MqttSettings { Broker = password, ClientId = "dev-a", Tls = broker.Tls() },
            _ => new MqttSettings { Broker = password, ClientId = "dev-a", Username = "dev-a", Password = SecureBroker.Password("dev-a") },
        };
        await using var connection = new MqttConnection(settings with { ConnectTimeout = TimeSpan.FromSeconds(3) }, _ => false, NullLogger.Instance);
        var error = await Assert.ThrowsAsync<MqttConnectionException>(() => connection.ConnectAsync([], CancellationToken.None));
        output.WriteLine($"{scenario}: {error.Message}");
        Assert.Contains(broker.Address(settings.Broker.Port).ToString(), error.Message, StringComparison.Ordinal);
        Assert.False(connection.IsConnected);
    }

    [Fact]
    public void IsLoopback_Hosts_OnlyMachineLocalAddresses()
    {
        Assert.True(MqttSecurity.IsLoopback("127.0.0.1"));
        Assert.True(MqttSecurity.IsLoopback("::1"));
        Assert.True(MqttSecurity.IsLoopback("localhost"));
        Assert.False(MqttSecurity.IsLoopback("10.0.0.7"));
        Assert.False(MqttSecurity.IsLoopback("broker.example.net"));
        Assert.False(MqttSecurity.IsLoopback("localhost.example.net"));
    }

    private static async Task<string> OtherCaAsync()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-other-ca-").FullName;
        using var p = Process.Start(new ProcessStartInfo("bash", [Path.Combine(SecureBroker.RepoRoot, "broker", "credentials.sh"), "ca", dir]) { RedirectStandardOutput = true })!;
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.Equal(0, p.ExitCode);
        return Path.Combine(dir, "ca.crt");
    }
}

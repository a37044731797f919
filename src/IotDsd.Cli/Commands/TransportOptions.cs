using System.CommandLine;
using IotDsd.Hosting;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary>
/// TLS options of the commands that talk to a broker. Plain TCP is allowed only to a loopback broker (the demo and
/// development set-up); anything else needs TLS, or <c>--insecure-plaintext</c> said out loud.
/// </summary>
internal sealed class TransportOptions
{
    public Option<string?> CaFile { get; } = new("--tls-ca") { Description = "Use TLS; PEM CA that signs the broker's certificate (default with --tls: the system store)." };
    public Option<bool> UseTls { get; } = new("--tls") { Description = "Use TLS, validating the broker against the system trust store (implied by any --tls-* option)." };
    public Option<string?> CertFile { get; } = new("--tls-cert") { Description = "PEM client certificate (this client's identity when the broker maps certificates to users: a device, or the operator for diag)." };
    public Option<string?> KeyFile { get; } = new("--tls-key") { Description = "PEM private key of --tls-cert (default: in the same file)." };
    public Option<string?> ServerName { get; } = new("--tls-server-name") { Description = "Name the broker's certificate must carry (default: the broker host)." };
    public Option<bool> InsecurePlaintext { get; } = new("--insecure-plaintext") { Description = "Allow plain TCP to a non-loopback broker: credentials and tokens travel unencrypted." };

    public void AddTo(Command command, bool recursive = false)
    {
        foreach (Option option in new Option[] { UseTls, CaFile, CertFile, KeyFile, ServerName, InsecurePlaintext })
        {
            option.Recursive = recursive;
            command.Add(option);
        }
    }

    /// <summary>The TLS settings asked for, or null for plain TCP where that is allowed; throws a <see cref="CliError"/> otherwise.</summary>
    public MqttTlsSettings? Parse(ParseResult result, BrokerAddress broker)
    {
        var tls = TransportSettings.Decide(result.GetValue(UseTls), result.GetValue(CaFile), result.GetValue(CertFile), result.GetValue(KeyFile), result.GetValue(ServerName),
            result.GetValue(InsecurePlaintext), broker, out var problem);
        return problem is null ? tls : throw new CliError(tls is null ? problem : $"{TransportSettings.Culprit(problem).Flag}: {problem}");
    }
}

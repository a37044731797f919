using IotDsd.Messaging.Connections;

namespace IotDsd.Hosting;

/// <summary>
/// The TLS decision of a client that talks to a broker. Plain TCP is allowed only to a loopback broker (the demo and
/// development set-up); anything else needs TLS, or <c>--insecure-plaintext</c> said out loud.
/// </summary>
internal static class TransportSettings
{
    /// <summary>The setting a TLS problem is about, from the file it names.</summary>
    public static Setting Culprit(string problem) =>
        problem.Contains("client certificate", StringComparison.Ordinal) ? Settings.TlsCert
        : problem.Contains("client key", StringComparison.Ordinal) ? Settings.TlsKey
        : Settings.TlsCa;

    /// <summary>The TLS settings from layered settings (config file, environment, flags); problems are reported on the setting.</summary>
    public static MqttTlsSettings? Read(LayeredConfiguration config, BrokerAddress broker)
    {
        static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
        var tls = Decide(config.Bool(Settings.Tls), NonEmpty(config.String(Settings.TlsCa)), NonEmpty(config.String(Settings.TlsCert)),
            NonEmpty(config.String(Settings.TlsKey)), NonEmpty(config.String(Settings.TlsServerName)), config.Bool(Settings.InsecurePlaintext), broker, out var problem);
        if (problem is not null)
        {
            config.Problem(tls is null ? Settings.InsecurePlaintext : Culprit(problem), problem);
        }

        return tls;
    }

    /// <summary>The TLS settings asked for, or null for plain TCP; <paramref name="problem"/> says what is wrong with them.</summary>
    public static MqttTlsSettings? Decide(bool useTls, string? ca, string? cert, string? key, string? name, bool insecure, BrokerAddress broker, out string? problem)
    {
        problem = null;
        if (!useTls && ca is null && cert is null && key is null && name is null)
        {
            if (!MqttSecurity.IsLoopback(broker.Host) && !insecure)
            {
                problem = $"broker {broker} is not on this machine: use TLS (--tls-ca CA.pem, and --tls-cert/--tls-key for a " +
                    "client certificate) or say --insecure-plaintext to send credentials and text unencrypted";
            }

            return null;
        }

        var tls = new MqttTlsSettings { CaFile = ca, CertFile = cert, KeyFile = key, ServerName = name };
        problem = tls.Validate();
        return tls;
    }
}

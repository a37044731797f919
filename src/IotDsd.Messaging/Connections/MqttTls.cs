using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;

namespace IotDsd.Messaging.Connections;

/// <summary>
/// TLS to the broker. The server's certificate is always validated — against <see cref="CaFile"/> when given (a
/// private CA; the system store is then ignored), otherwise against the system trust store — and its name must
/// match <see cref="ServerName"/> (default: the broker host). A client certificate is presented when
/// <see cref="CertFile"/> is set. All files are PEM.
/// </summary>
public sealed record MqttTlsSettings
{
    /// <summary>CA certificate(s) that sign the broker's certificate; null trusts the system store.</summary>
    public string? CaFile { get; init; }

    /// <summary>This client's certificate (its identity when the broker maps certificates to user names).</summary>
    public string? CertFile { get; init; }

    /// <summary>The private key of <see cref="CertFile"/>; null when the key is in the same PEM file.</summary>
    public string? KeyFile { get; init; }

    /// <summary>Name the broker's certificate must carry; null uses the broker host.</summary>
    public string? ServerName { get; init; }

    /// <summary>Returns null when the files exist, can be read, hold PEM certificates and pair up with their key;
    /// else a one-line reason naming the file.</summary>
    public string? Validate()
    {
        foreach (var (what, path) in new[] { ("CA file", CaFile), ("client certificate", CertFile), ("client key", KeyFile) })
        {
            if (path is null)
            {
                continue;
            }

            if (Directory.Exists(path))
            {
                return $"TLS {what} '{path}' is a directory, not a PEM file";
            }

            if (!File.Exists(path))
            {
                return $"TLS {what} '{path}' does not exist";
            }

            try
            {
                using var stream = File.OpenRead(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return $"TLS {what} '{path}' cannot be read: {ex.Message.TrimEnd('.')}";
            }
        }

        if (KeyFile is not null && CertFile is null)
        {
            return "a TLS client key needs its client certificate (--tls-cert)";
        }

        // Load them once here, so that a bad file is reported when the settings are read rather than on every connect.
        try
        {
            if (MqttSecurity.LoadCa(CaFile) is { } ca)
            {
                foreach (var certificate in ca)
                {
                    certificate.Dispose();
                }
            }

            MqttSecurity.LoadClientCertificate(CertFile, KeyFile)?.Dispose();
        }
        catch (MqttConnectionException ex)
        {
            return ex.Message;
        }

        return null;
    }
}

/// <summary>Builds the TLS and credential part of the client options from <see cref="MqttSettings"/>.</summary>
public static class MqttSecurity
{
    /// <summary>Headroom over the largest payload for the MQTT fixed header, topic and properties.</summary>
    public const int PacketOverheadBytes = 64 * 1024;

    /// <summary>Applies credentials, TLS and the maximum packet size the broker may send to this client.</summary>
    public static void Apply(MqttClientOptionsBuilder builder, MqttSettings settings)
    {
        if (settings.Username is not null)
        {
            builder.WithCredentials(settings.Username, settings.Password ?? "");
        }

        // The broker drops (never sends) anything bigger, so an oversized publish cannot make this client buffer it.
        builder.WithMaximumPacketSize((uint)Math.Min(int.MaxValue, (long)settings.MaxPayloadBytes + PacketOverheadBytes));
        if (settings.Tls is not { } tls)
        {
            return;
        }

        var trust = LoadCa(tls.CaFile);
        var client = LoadClientCertificate(tls.CertFile, tls.KeyFile);
        builder.WithTlsOptions(o =>
        {
            o.UseTls()
                .WithSslProtocols(SslProtocols.Tls12 | SslProtocols.Tls13)
                .WithTargetHost(tls.ServerName ?? settings.Broker.Host)
                .WithCertificateValidationHandler(e => IsTrusted(e.Certificate, e.Chain, e.SslPolicyErrors, trust));
            if (client is not null)
            {
                o.WithClientCertificates([client]);
            }
        });
    }

    /// <summary>
    /// The server certificate is valid when its name matches and it chains to <paramref name="trust"/> (a private CA)
    /// or, with no CA given, when the platform found no error at all. Nothing is ever ignored.
    /// </summary>
    public static bool IsTrusted(X509Certificate? certificate, X509Chain? platformChain, SslPolicyErrors errors, X509Certificate2Collection? trust)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable) || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            return false;
        }

        if (trust is null)
        {
            return errors == SslPolicyErrors.None;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trust);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (platformChain is not null)
        {
            foreach (var element in platformChain.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        using var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
    }

    internal static X509Certificate2Collection? LoadCa(string? path)
    {
        if (path is null)
        {
            return null;
        }

        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPemFile(path);
        }
        catch (CryptographicException ex)
        {
            throw new MqttConnectionException($"TLS CA file '{path}' is not a PEM certificate: {ex.Message}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MqttConnectionException($"TLS CA file '{path}' cannot be read: {ex.Message.TrimEnd('.')}", ex);
        }

        return collection.Count > 0 ? collection : throw new MqttConnectionException($"TLS CA file '{path}' holds no certificate");
    }

    internal static X509Certificate2? LoadClientCertificate(string? certFile, string? keyFile)
    {
        if (certFile is null)
        {
            return null;
        }

        var certText = ReadPem("client certificate", certFile);
        if (!certText.Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
        {
            throw new MqttConnectionException($"TLS client certificate '{certFile}' holds no PEM certificate");
        }

        var keyText = keyFile is null ? certText : ReadPem("client key", keyFile);
        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new MqttConnectionException(keyFile is null
                ? $"TLS client certificate '{certFile}' holds no private key; give it with --tls-key (Mqtt:TlsKey)"
                : $"TLS client key '{keyFile}' holds no PEM private key");
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPem(certText, keyText);
            // SslStream wants a certificate whose key is not ephemeral: round-trip through PKCS#12.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException ex)
        {
            throw new MqttConnectionException($"TLS client certificate '{certFile}' and key '{keyFile ?? certFile}' cannot be loaded together: {ex.Message}", ex);
        }
    }

    private static string ReadPem(string what, string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MqttConnectionException($"TLS {what} '{path}' cannot be read: {ex.Message.TrimEnd('.')}", ex);
        }
    }

    /// <summary>True for hosts that never leave the machine: <c>localhost</c> and loopback addresses.</summary>
    public static bool IsLoopback(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
}

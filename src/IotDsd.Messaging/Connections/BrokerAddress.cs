using System.Globalization;

namespace IotDsd.Messaging.Connections;

/// <summary>A broker's host and port, as written on the command line (<c>HOST:PORT</c>).</summary>
public sealed record BrokerAddress(string Host, int Port)
{
    /// <summary>The MQTT default port.</summary>
    public const int DefaultPort = 1883;

    /// <summary>Parses <c>HOST</c>, <c>HOST:PORT</c> or <c>[IPv6]:PORT</c>; returns null and a reason when invalid.</summary>
    public static BrokerAddress? TryParse(string? text, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "broker address is empty; expected HOST:PORT, e.g. 127.0.0.1:1883";
            return null;
        }

        text = text.Trim();
        if (text.Contains("://", StringComparison.Ordinal))
        {
            error = $"broker address '{text}' must be HOST:PORT without a scheme";
            return null;
        }

        string host;
        var port = DefaultPort;
        var colon = text.LastIndexOf(':');
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                error = $"broker address '{text}' has an unclosed '['";
                return null;
            }

            host = text[1..close];
            if (close + 1 < text.Length && !TryPort(text[(close + 2)..], out port))
            {
                error = $"broker port in '{text}' must be a number from 1 to 65535";
                return null;
            }
        }
        else if (colon >= 0)
        {
            host = text[..colon];
            if (!TryPort(text[(colon + 1)..], out port))
            {
                error = $"broker port in '{text}' must be a number from 1 to 65535";
                return null;
            }
        }
        else
        {
            host = text;
        }

        if (host.Length == 0)
        {
            error = $"broker address '{text}' has no host";
            return null;
        }

        return new BrokerAddress(host, port);
    }

    private static bool TryPort(string text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 1 and <= 65535;

    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

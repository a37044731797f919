using System.Globalization;
using IotDsd.Messaging.LinkEmulation;

namespace IotDsd.Testbed.Links;

/// <summary>
/// The control lines of <c>iotdsd link</c> (<c>cut</c>, <c>restore</c>, <c>half-open</c>, <c>delay MS [JITTER_MS]</c>,
/// <c>bw UP_BPS DOWN_BPS</c>, <c>status</c>) applied to a running <see cref="LinkEmulator"/>.
/// </summary>
internal static class LinkControl
{
    /// <summary>Reads commands from stdin until it closes; then waits for cancellation.</summary>
    public static async Task RunAsync(LinkEmulator link, TextReader input, TextWriter output, CancellationToken ct)
    {
        while (await input.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
        {
            var reply = Apply(link, line);
            if (reply is not null)
            {
                await output.WriteLineAsync(reply).ConfigureAwait(false);
                await output.FlushAsync(ct).ConfigureAwait(false);
            }
        }

        await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
    }

    /// <summary>Applies one control line; returns what to print.</summary>
    internal static string? Apply(LinkEmulator link, string line)
    {
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 0)
        {
            return null;
        }

        try
        {
            switch (words[0].ToLowerInvariant())
            {
                case "cut":
                    link.Cut();
                    break;
                case "restore" or "up":
                    link.Restore();
                    break;
                case "half-open" or "halfopen":
                    link.HalfOpen();
                    break;
                case "delay" when words.Length is 2 or 3:
                    var ms = Number(words[1]);
                    var j = words.Length == 3 ? Number(words[2]) : link.Up.Jitter.TotalMilliseconds;
                    link.Configure(
                        link.Up with { Delay = TimeSpan.FromMilliseconds(ms), Jitter = TimeSpan.FromMilliseconds(j) },
                        link.Down with { Delay = TimeSpan.FromMilliseconds(ms), Jitter = TimeSpan.FromMilliseconds(j) });
                    break;
                case "bw" when words.Length == 3:
                    link.Configure(link.Up with { BytesPerSecond = (long)Number(words[1]) }, link.Down with { BytesPerSecond = (long)Number(words[2]) });
                    break;
                case "status":
                    break;
                default:
                    return "commands: cut | restore | half-open | delay MS [JITTER_MS] | bw UP_BPS DOWN_BPS | status";
            }
        }
        catch (ArgumentException ex)
        {
            return $"error: {ex.Message}";
        }

        return string.Create(CultureInfo.InvariantCulture, $"{link.State.ToString().ToLowerInvariant()}; up: {link.Up}; down: {link.Down}; connections {link.ActiveConnections}, accepted {link.Accepted}, refused {link.Refused}, bytes up {link.BytesUp} down {link.BytesDown}");
    }

    internal static double Number(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0
            ? v
            : throw new ArgumentException($"'{text}' is not a non-negative number");
}

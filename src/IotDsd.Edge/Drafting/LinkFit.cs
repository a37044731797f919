using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// The step-down for a link too slow for the round's shape: a round of γ rows must go up within
/// <see cref="EdgeOptions.TransferTimeoutCap"/> at the measured uplink (base publish timeout + bytes / bandwidth ×
/// <see cref="MqttConnection.TransferSafetyFactor"/>). When it cannot, γ steps down to the largest that fits (0, the
/// verifier-decoding rung, when not even one row fits) where γ may adapt (greedy, or sampling with
/// <see cref="EdgeOptions.AdaptGammaInSampling"/>); in a sampling mode where it may not, the generation fails closed
/// with the reason rather than resending a round that can never be acknowledged.
/// </summary>
internal sealed partial class LinkFit(EdgeOptions options, SessionSettings settings, bool mayAdapt, MqttConnection connection, ILogger logger)
{
    private double _rowBytes; // uplink wire bytes per drafted row, from the last committed round
    private int _lastRows;

    /// <summary>A round went up (or is going): remembers its rows, to learn the bytes per row once it is committed.</summary>
    /// <summary>Uplink wire bytes per drafted row (node), from the last committed round; 0 until then.</summary>
    public double RowBytes => _rowBytes;

    public void Sent(object request) => _lastRows = request is DraftRound round ? round.Draft.Length : 0;

    /// <summary>A round was committed: the last publish's size over its rows is the bytes per row.</summary>
    public void Committed()
    {
        if (_lastRows > 0)
        {
            _rowBytes = connection.LastPublishBytes / (double)_lastRows;
        }
    }

    /// <summary>The largest γ up to <paramref name="gamma"/> that fits the link.</summary>
    public int Fit(int gamma)
    {
        if (gamma <= 0 || _rowBytes <= 0 || connection.UplinkBytesPerSecond is not { } bps)
        {
            return gamma;
        }

        var seconds = (options.TransferTimeoutCap - options.PublishTimeout).TotalSeconds;
        var fit = (int)Math.Min(gamma, Math.Floor(seconds * bps / MqttConnection.TransferSafetyFactor / _rowBytes));
        if (fit >= gamma)
        {
            return gamma;
        }

        if (!mayAdapt)
        {
            throw new GenerationException(string.Create(
                CultureInfo.InvariantCulture,
                $"a {settings.Mode.Name()} round of γ = {gamma} ({gamma * _rowBytes:0} bytes) cannot go up within the transfer timeout cap of {options.TransferTimeoutCap.TotalSeconds:0} s at the measured uplink of {bps:0} B/s; lower --gamma, pick a sparser mode (dssd, rsr), or let γ step down with --adapt-in-sampling"));
        }

        var to = Math.Max(0, fit);
        Log.SteppedDown(logger, settings.SessionId, gamma, to, bps, options.TransferTimeoutCap.TotalSeconds);
        return to;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 321, Level = LogLevel.Warning, Message = "Session {SessionId}: a round of γ = {From} cannot go up within {CapSeconds} s at the measured uplink of {BytesPerSecond} B/s; γ steps down to {To}")]
        public static partial void SteppedDown(ILogger logger, string sessionId, int from, int to, double bytesPerSecond, double capSeconds);
    }
}

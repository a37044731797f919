namespace IotDsd.Messaging.Connections;

/// <summary>
/// Payload-sized timeouts: the connection measures its own uplink from completed publishes (bytes on the link over the
/// time to PUBACK, smoothed) and lets each publish, and each reply wait, grow with the bytes it carries:
/// <c>timeout = base + bytes / measured bytes per second × <see cref="TransferSafetyFactor"/></c>, never above
/// <see cref="MqttSettings.TransferTimeoutCap"/>. A slow but live link is thereby not mistaken for a dead one.
/// </summary>
public sealed partial class MqttConnection
{
    /// <summary>Margin on the measured transfer time (jitter, the broker's own queueing, a competing publish).</summary>
    public const double TransferSafetyFactor = 3;

    /// <summary>Publishes smaller than this measure the round trip rather than the bandwidth, so they are not samples;
    /// a timed-out publish smaller than this counts towards dead-link detection whatever the estimate.</summary>
    public const int MinBandwidthSampleBytes = 2048;

    /// <summary>Weight of the newest sample in the smoothed uplink bandwidth.</summary>
    private const double BandwidthSmoothing = 0.3;

    private readonly Lock _uplinkLock = new();
    private double _uplinkBytesPerSecond; // 0: not measured yet
    private int _lastPublishBytes;

    /// <summary>The smoothed uplink bandwidth measured from this connection's publishes, in bytes per second; null
    /// until a publish of at least <see cref="MinBandwidthSampleBytes"/> has completed or timed out.</summary>
    public double? UplinkBytesPerSecond
    {
        get
        {
            lock (_uplinkLock)
            {
                return _uplinkBytesPerSecond > 0 ? _uplinkBytesPerSecond : null;
            }
        }
    }

    /// <summary>Wire bytes of the last publish the broker acknowledged.</summary>
    public int LastPublishBytes => Volatile.Read(ref _lastPublishBytes);

    /// <summary>
    /// The timeout for a transfer of <paramref name="bytes"/> on top of <paramref name="baseTimeout"/>: base plus the
    /// measured transfer time times <see cref="TransferSafetyFactor"/>, bounded by <see cref="MqttSettings.TransferTimeoutCap"/>
    /// (and never below the base). With no measurement yet it is the base.
    /// </summary>
    public TimeSpan TransferTimeout(TimeSpan baseTimeout, long bytes)
    {
        var bandwidth = UplinkBytesPerSecond;
        if (bandwidth is not { } bps || bytes <= 0)
        {
            return baseTimeout;
        }

        var extra = TimeSpan.FromSeconds(Math.Min(bytes / bps * TransferSafetyFactor, _settings.TransferTimeoutCap.TotalSeconds));
        var total = baseTimeout + extra;
        return total > _settings.TransferTimeoutCap ? (baseTimeout > _settings.TransferTimeoutCap ? baseTimeout : _settings.TransferTimeoutCap) : total;
    }

    /// <summary>A publish of <paramref name="bytes"/> was acknowledged after <paramref name="elapsed"/>.</summary>
    private void UplinkCompleted(int bytes, TimeSpan elapsed)
    {
        Volatile.Write(ref _lastPublishBytes, bytes);
        if (bytes < MinBandwidthSampleBytes || elapsed <= TimeSpan.Zero)
        {
            return;
        }

        var sample = bytes / elapsed.TotalSeconds;
        lock (_uplinkLock)
        {
            _uplinkBytesPerSecond = _uplinkBytesPerSecond > 0 ? (BandwidthSmoothing * sample) + ((1 - BandwidthSmoothing) * _uplinkBytesPerSecond) : sample;
        }
    }

    /// <summary>
    /// A publish of <paramref name="bytes"/> was not acknowledged within <paramref name="timeout"/>. When it was big
    /// enough to measure and its timeout was under the cap, the link is taken as slower than estimated, not dead: the
    /// estimate drops to at most half of what the publish proves (bytes / timeout), so the resend gets a longer
    /// timeout, and the timeout does not count towards dead-link detection. Returns true when it should count.
    /// </summary>
    private bool UplinkTimedOut(int bytes, TimeSpan timeout)
    {
        if (bytes < MinBandwidthSampleBytes || timeout >= _settings.TransferTimeoutCap)
        {
            return true;
        }

        var bound = bytes / Math.Max(timeout.TotalSeconds, 1e-3);
        lock (_uplinkLock)
        {
            _uplinkBytesPerSecond = Math.Min(_uplinkBytesPerSecond > 0 ? _uplinkBytesPerSecond : bound, bound) / 2;
        }

        return false;
    }
}

using MQTTnet;

namespace IotDsd.Messaging.Connections;

/// <summary>Dead-link detection: a half-open TCP connection looks alive to the client, so timeouts decide.</summary>
public sealed partial class MqttConnection
{
    /// <summary>Times the link was declared dead after consecutive timeouts and dropped to force a reconnect.</summary>
    public long DeadLinksDetected => Interlocked.Read(ref _deadLinks);

    /// <summary>
    /// Counts a timeout on this link (a publish, or a reply the caller waited for in vain). After
    /// <see cref="MqttSettings.DeadAfterTimeouts"/> in a row with nothing received in between, the link is declared
    /// dead — a half-open TCP connection looks alive to the client — and dropped, so the supervisor reconnects.
    /// </summary>
    public void ReportTimeout()
    {
        if (Interlocked.Increment(ref _consecutiveTimeouts) >= _settings.DeadAfterTimeouts && _client.IsConnected)
        {
            Interlocked.Exchange(ref _consecutiveTimeouts, 0);
            Interlocked.Increment(ref _deadLinks);
            Log.DeadLink(_logger, _settings.ClientId, _settings.DeadAfterTimeouts);
            _ = DropLinkAsync();
        }
    }

    /// <summary>Something came through: the link is alive.</summary>
    public void ReportAlive() => Interlocked.Exchange(ref _consecutiveTimeouts, 0);

    /// <summary>Completes when the client is connected (at once if it is).</summary>
    public Task WaitConnectedAsync(CancellationToken ct)
    {
        var up = Volatile.Read(ref _up).Task;
        return _client.IsConnected || up.IsCompleted ? Task.CompletedTask : up.WaitAsync(ct);
    }

    private async Task DropLinkAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or MQTTnet.Exceptions.MqttCommunicationException or ObjectDisposedException)
        {
            Log.DisconnectFailed(_logger, _settings.ClientId, ex.Message);
        }

        // A dropped link whose disconnect handler did not run (the client thought it never was connected) still
        // needs the supervisor awake.
        if (!_client.IsConnected && _linkLost.CurrentCount == 0 && !_stopping.IsCancellationRequested)
        {
            try
            {
                _linkLost.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }
    }
}

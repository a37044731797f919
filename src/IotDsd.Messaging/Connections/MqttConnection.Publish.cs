using System.Buffers;
using IotDsd.Contracts.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace IotDsd.Messaging.Connections;

/// <summary>The publish path: wire and raw publishes bounded by the publish timeout, and the accounting of refusals.</summary>
public sealed partial class MqttConnection
{
    private long _publishesRefused;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _refusedTopics = new(StringComparer.Ordinal);

    /// <summary>Distinct topics whose refusal is remembered (and so logged once); beyond it refusals are only counted.</summary>
    private const int MaxRefusedTopicsRemembered = 256;

    /// <summary>Publishes the broker answered with a failure reason (0x87 not authorized: the ACL denies this identity the topic).</summary>
    public long PublishesRefused => Interlocked.Read(ref _publishesRefused);

    /// <summary>Encodes and publishes a wire message at QoS 1; returns bytes on the link (payload, framed).</summary>
    public async Task<(int Payload, int Wire)> PublishAsync(string topic, object message, string? responseTopic, byte[]? correlation, CancellationToken ct)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        WireCodec.Write(buffer, message);
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(new ReadOnlySequence<byte>(buffer.WrittenMemory))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        if (responseTopic is not null)
        {
            builder.WithResponseTopic(responseTopic);
        }

        if (correlation is not null)
        {
            builder.WithCorrelationData(correlation);
        }

        await PublishBuiltAsync(builder.Build(), ct).ConfigureAwait(false);
        return (buffer.WrittenCount, MqttFraming.PublishBytes(topic, buffer.WrittenCount, responseTopic, correlation?.Length ?? 0));
    }

    /// <summary>Publishes raw bytes (status, diagnostics) at QoS 1.</summary>
    public Task PublishRawAsync(string topic, byte[] payload, bool retain, CancellationToken ct) =>
        PublishBuiltAsync(
            new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithRetainFlag(retain)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(),
            ct);

    /// <summary>Publishes raw bytes at QoS 1 as an MQTT 5 request or reply (diagnostic commands).</summary>
    public Task PublishRawAsync(string topic, byte[] payload, string? responseTopic, byte[]? correlation, CancellationToken ct)
    {
        var builder = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        if (responseTopic is not null)
        {
            builder.WithResponseTopic(responseTopic);
        }

        if (correlation is not null)
        {
            builder.WithCorrelationData(correlation);
        }

        return PublishBuiltAsync(builder.Build(), ct);
    }

    /// <summary>Publishes the retained birth again with the current connection counter (a diagnostic command asks for it).</summary>
    public Task RepublishBirthAsync(CancellationToken ct) =>
        _settings.Presence is { } presence ? PublishRawAsync(presence.Topic, presence.Birth(presence.Sequence?.Connection ?? Connections), retain: true, ct) : Task.CompletedTask;

    private async Task PublishBuiltAsync(MqttApplicationMessage message, CancellationToken ct)
    {
        var bytes = MqttFraming.PublishBytes(message.Topic, (int)message.Payload.Length, message.ResponseTopic, message.CorrelationData?.Length ?? 0);
        var limit = TransferTimeout(_settings.PublishTimeout, bytes);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(limit);
        var started = _time.GetTimestamp();
        MqttClientPublishResult result;
        try
        {
            result = await _client.PublishAsync(message, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            if (UplinkTimedOut(bytes, limit))
            {
                ReportTimeout();
            }

            throw new MqttPublishException($"publish of {bytes} bytes to '{message.Topic}' timed out after {limit.TotalSeconds:0.#} s");
        }
        catch (MQTTnet.Exceptions.MqttClientNotConnectedException ex)
        {
            throw new MqttPublishException($"publish to '{message.Topic}' failed: not connected to {_settings.Broker}", ex);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationTimedOutException ex) when (ct.IsCancellationRequested)
        {
            // The caller gave up (a round sent ahead that is no longer wanted, a stopping service): that says nothing of
            // the link, so it neither counts towards a dead link nor lowers the uplink estimate.
            throw new OperationCanceledException($"publish to '{message.Topic}' cancelled", ex, ct);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationTimedOutException ex)
        {
            // MQTTnet reports our own timeout's cancellation while it waits for the PUBACK this way.
            if (UplinkTimedOut(bytes, limit))
            {
                ReportTimeout();
            }

            throw new MqttPublishException($"publish of {bytes} bytes to '{message.Topic}' timed out after {limit.TotalSeconds:0.#} s: {ex.Message}", ex);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException ex)
        {
            throw new MqttPublishException($"publish to '{message.Topic}' failed: {ex.Message}", ex);
        }

        ReportAlive();
        UplinkCompleted(bytes, _time.GetElapsedTime(started));
        if (!result.IsSuccess && result.ReasonCode != MqttClientPublishReasonCode.NoMatchingSubscribers)
        {
            // Refusals are counted every time and logged once per topic: a role refused on a topic would otherwise
            // log the same line every round or every metrics period.
            Interlocked.Increment(ref _publishesRefused);
            if (_refusedTopics.Count < MaxRefusedTopicsRemembered && _refusedTopics.TryAdd(message.Topic, 0))
            {
                Log.PublishRefused(_logger, _settings.ClientId, message.Topic, result.ReasonCode.ToString(), (int)result.ReasonCode);
            }

            throw new MqttPublishException($"broker refused publish to '{message.Topic}': {result.ReasonCode} {result.ReasonString}");
        }
    }
}

using System.Buffers;
using System.Collections.Concurrent;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace IotDsd.Tests.Infrastructure;

/// <summary>A plain MQTT 5 client that is not ours: publishes arbitrary bytes and records what it receives.</summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();

    public ConcurrentQueue<(string Topic, byte[] Payload, byte[]? Correlation)> Received { get; } = new();

    /// <summary>Raised on the receive loop for every message, as it arrives (before it is queued in <see cref="Received"/>).</summary>
    public event Action<string, byte[]>? Arrived;

    public static async Task<RawClient> ConnectAsync(int port, string clientId, params string[] subscriptions)
    {
        var raw = new RawClient();
        raw._client.ApplicationMessageReceivedAsync += e =>
        {
            raw.Arrived?.Invoke(e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray());
            raw.Received.Enqueue((e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray(), e.ApplicationMessage.CorrelationData));
            return Task.CompletedTask;
        };
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(clientId)
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();
        options.WriterBufferSize = 1 << 20;
        options.WriterBufferSizeMax = 32 << 20;
        await raw._client.ConnectAsync(options);
        foreach (var s in subscriptions)
        {
            await raw._client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(s, MqttQualityOfServiceLevel.AtLeastOnce).Build());
        }

        return raw;
    }

    public Task PublishAsync(string topic, byte[] payload, string? responseTopic = null, byte[]? correlation = null)
    {
        var builder = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        if (responseTopic is not null)
        {
            builder.WithResponseTopic(responseTopic);
        }

        if (correlation is not null)
        {
            builder.WithCorrelationData(correlation);
        }

        return _client.PublishAsync(builder.Build());
    }

    /// <summary>Publishes at QoS 1, retained or not.</summary>
    public Task PublishAsync(string topic, byte[] payload, bool retain) =>
        _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithRetainFlag(retain).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());

    /// <summary>Waits until <paramref name="predicate"/> holds for some received message, or fails after 10 s.</summary>
    public async Task<(string Topic, byte[] Payload, byte[]? Correlation)> WaitForAsync(Func<(string Topic, byte[] Payload, byte[]? Correlation), bool> predicate)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var m in Received)
            {
                if (predicate(m))
                {
                    return m;
                }
            }

            await Task.Delay(10);
        }

        throw new TimeoutException("expected message did not arrive within 10 s");
    }

    public async ValueTask DisposeAsync()
    {
        await _client.DisconnectAsync();
        _client.Dispose();
    }
}

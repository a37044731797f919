using System.Collections.Concurrent;
using IotDsd.Messaging.Connections;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace IotDsd.Tests.Security;

/// <summary>An MQTT 5 client with the product's TLS and credential options that reports the broker's reason codes as they are.</summary>
public sealed class SecureClient : IAsyncDisposable
{
    private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();

    public ConcurrentQueue<(string Topic, byte[] Payload)> Received { get; } = new();

    public MqttClientConnectResult? ConnectResult { get; private set; }

    public static async Task<SecureClient> ConnectAsync(MqttSettings settings)
    {
        var c = new SecureClient();
        c._client.ApplicationMessageReceivedAsync += e =>
        {
            c.Received.Enqueue((e.ApplicationMessage.Topic, System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload)));
            return Task.CompletedTask;
        };
        var builder = new MqttClientOptionsBuilder()
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(settings.ClientId)
            .WithTcpServer(settings.Broker.Host, settings.Broker.Port)
            .WithTimeout(TimeSpan.FromSeconds(10));
        MqttSecurity.Apply(builder, settings);
        c.ConnectResult = await c._client.ConnectAsync(builder.Build());
        return c;
    }

    public async Task<MqttClientSubscribeResultCode> SubscribeAsync(string filter)
    {
        var result = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build());
        return result.Items.Single().ResultCode;
    }

    public async Task<MqttClientPublishReasonCode> PublishAsync(string topic, byte[] payload, bool retain = false, string? responseTopic = null)
    {
        var builder = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithRetainFlag(retain)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        if (responseTopic is not null)
        {
            builder.WithResponseTopic(responseTopic);
        }

        var result = await _client.PublishAsync(builder.Build());
        return result.ReasonCode;
    }

    public bool IsConnected => _client.IsConnected;

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync();
        }

        _client.Dispose();
    }
}

using System.Text;

namespace IotDsd.Messaging.Connections;

/// <summary>Sizes of MQTT 5 packets as they cross a link, for bytes-on-the-wire accounting.</summary>
public static class MqttFraming
{
    /// <summary>Bytes of a QoS 1 PUBLISH (fixed header, topic, packet id, properties, payload) plus its PUBACK.</summary>
    public static int PublishBytes(string topic, int payloadBytes, string? responseTopic, int correlationBytes)
    {
        var properties = 0;
        if (responseTopic is not null)
        {
            properties += 3 + Encoding.UTF8.GetByteCount(responseTopic);
        }

        if (correlationBytes > 0)
        {
            properties += 3 + correlationBytes;
        }

        var remaining = 2 + Encoding.UTF8.GetByteCount(topic) + 2 + VarIntBytes(properties) + properties + payloadBytes;
        const int pubAck = 4;
        return 1 + VarIntBytes(remaining) + remaining + pubAck;
    }

    private static int VarIntBytes(int value) => value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

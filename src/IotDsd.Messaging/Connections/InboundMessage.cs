using IotDsd.Contracts.Wire;

namespace IotDsd.Messaging.Connections;

/// <summary>A message taken off the MQTT receive loop: already decoded, with its reply routing.</summary>
public sealed record InboundMessage(
    string Topic,
    DecodeResult Decoded,
    byte[]? Raw,
    string? ResponseTopic,
    byte[]? CorrelationData,
    int PayloadBytes,
    long ReceivedTimestamp);

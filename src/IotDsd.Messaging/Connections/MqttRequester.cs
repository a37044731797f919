using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Threading.Channels;

namespace IotDsd.Messaging.Connections;

/// <summary>
/// MQTT 5 request/reply without per-call subscriptions: each request carries the caller's one reply topic and a
/// unique correlation id; replies are matched back by that id. Replies nobody waits for (late duplicates) are
/// counted and dropped.
/// </summary>
public sealed class MqttRequester(MqttConnection connection, string replyTopic)
{
    private readonly ConcurrentDictionary<long, TaskCompletionSource<InboundMessage>> _pending = new();
    private readonly ConcurrentDictionary<long, Channel<InboundMessage>> _listeners = new();
    private long _next = Random.Shared.NextInt64(1, long.MaxValue / 2);
    private long _unmatched;

    /// <summary>Replies that matched no outstanding request.</summary>
    public long Unmatched => Interlocked.Read(ref _unmatched);

    /// <summary>Bytes sent (payload and framed), for accounting.</summary>
    public long SentPayloadBytes => Interlocked.Read(ref _sentPayload);

    public long SentWireBytes => Interlocked.Read(ref _sentWire);

    private long _sentPayload;
    private long _sentWire;

    /// <summary>Offers an inbound message; returns true if it was a reply to an outstanding request.</summary>
    public bool TryComplete(InboundMessage message)
    {
        if (message.CorrelationData is { Length: 8 } c && _pending.TryRemove(BinaryPrimitives.ReadInt64LittleEndian(c), out var tcs))
        {
            tcs.TrySetResult(message);
            return true;
        }

        if (message.CorrelationData is { Length: 8 } l && _listeners.TryGetValue(BinaryPrimitives.ReadInt64LittleEndian(l), out var channel))
        {
            return channel.Writer.TryWrite(message);
        }

        Interlocked.Increment(ref _unmatched);
        return false;
    }

    /// <summary>Publishes <paramref name="request"/> and waits up to <paramref name="timeout"/> for its reply; null on timeout.</summary>
    public Task<InboundMessage?> RequestAsync(string topic, object request, TimeSpan timeout, CancellationToken ct) =>
        RequestAsync(topic, request, timeout, NewCorrelationId(), ct);

    /// <summary>A fresh correlation id, to reuse across resends of one logical request.</summary>
    public long NewCorrelationId() => Interlocked.Increment(ref _next);

    /// <summary>
    /// Publishes <paramref name="request"/> under correlation id <paramref name="id"/> and waits for its reply; null on
    /// timeout. Resending with the same id lets a late reply to an earlier send answer the resend.
    /// </summary>
    public Task<InboundMessage?> RequestAsync(string topic, object request, TimeSpan timeout, long id, CancellationToken ct) =>
        RequestCoreAsync(correlation => SendCoreAsync(topic, request, correlation, ct), timeout, id, ct);

    /// <summary>
    /// Every reply under correlation id <paramref name="id"/>, in arrival order, until the returned listener is disposed:
    /// for requests answered by a stream of messages. Send the request with <see cref="SendAsync"/>.
    /// </summary>
    public Listener Listen(long id)
    {
        var channel = Channel.CreateUnbounded<InboundMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        _listeners[id] = channel;
        return new Listener(this, id, channel.Reader);
    }

    /// <summary>Publishes <paramref name="request"/> under correlation id <paramref name="id"/> without waiting for a reply.</summary>
    public Task SendAsync(string topic, object request, long id, CancellationToken ct)
    {
        var correlation = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(correlation, id);
        return SendCoreAsync(topic, request, correlation, ct);
    }

    private async Task<int> SendCoreAsync(string topic, object request, byte[] correlation, CancellationToken ct)
    {
        var (payload, wire) = await connection.PublishAsync(topic, request, replyTopic, correlation, ct).ConfigureAwait(false);
        Interlocked.Add(ref _sentPayload, payload);
        Interlocked.Add(ref _sentWire, wire);
        return wire;
    }

    /// <summary>The replies of one streamed request; disposing stops collecting them.</summary>
    public sealed class Listener(MqttRequester owner, long id, ChannelReader<InboundMessage> reader) : IDisposable
    {
        public long Id { get; } = id;
        public ChannelReader<InboundMessage> Reader { get; } = reader;

        public void Dispose() => owner._listeners.TryRemove(Id, out _);
    }

    /// <summary>As <see cref="RequestAsync(string, object, TimeSpan, CancellationToken)"/> with a raw payload (diagnostic commands are plain JSON).</summary>
    public Task<InboundMessage?> RequestRawAsync(string topic, byte[] payload, TimeSpan timeout, CancellationToken ct) =>
        RequestCoreAsync(
            async correlation =>
            {
                await connection.PublishRawAsync(topic, payload, replyTopic, correlation, ct).ConfigureAwait(false);
                return payload.Length;
            },
            timeout,
            NewCorrelationId(),
            ct);

    /// <summary>The reply wait grows with the request's size as the publish timeout does
    /// (<see cref="MqttConnection.TransferTimeout"/>): the receiver has to take in what was sent before it can answer.</summary>
    private async Task<InboundMessage?> RequestCoreAsync(Func<byte[], Task<int>> publish, TimeSpan timeout, long id, CancellationToken ct)
    {
        var correlation = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(correlation, id);
        var tcs = new TaskCompletionSource<InboundMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        try
        {
            var sent = await publish(correlation).ConfigureAwait(false);
            return await tcs.Task.WaitAsync(connection.TransferTimeout(timeout, sent), ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null;
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }
}

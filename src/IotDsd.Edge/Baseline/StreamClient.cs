using System.Buffers.Binary;
using System.Collections.Concurrent;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Baseline;

/// <summary>
/// A device of the server-only baseline: sends its prompt once and receives every token streamed down by a
/// <c>BaselineServer</c>. It drafts nothing; it is what a fleet would run without speculative decoding. Chunks are
/// placed by index with the streamed rung's <see cref="TokenPlacement"/>: a duplicated delivery is counted and ignored,
/// a missing one is detected, and a chunk outside the stream or conflicting with a token already received is counted
/// as rejected and changes nothing (the stream fails once as many were rejected as a request may be attempted).
/// </summary>
public sealed class StreamClient : IAsyncDisposable
{
    private readonly EdgeOptions _options;
    private readonly string _serverId;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<long, Stream> _streams = new();
    private MqttConnection? _connection;
    private Task? _pump;
    private long _next = Random.Shared.NextInt64(1, long.MaxValue / 2);

    public StreamClient(EdgeOptions options, string serverId, ILogger logger, TimeProvider? time = null)
    {
        if (options.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(options));
        }

        if (!TopicScheme.IsValidId(serverId))
        {
            throw new ArgumentException($"server id '{serverId}' must be 1-64 characters of A-Z a-z 0-9 _ . -", nameof(serverId));
        }

        _options = options;
        _serverId = serverId;
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    public async Task StartAsync(CancellationToken ct)
    {
        var replies = TopicScheme.DeviceReplies(_options.DeviceId);
        _connection = new MqttConnection(_options.Mqtt(), t => t == replies, _logger, _time);
        await _connection.ConnectAsync([replies], ct).ConfigureAwait(false);
        _pump = Task.Run(() => PumpAsync(_connection), CancellationToken.None);
    }

    private async Task PumpAsync(MqttConnection connection)
    {
        await foreach (var message in connection.Inbound.ReadAllAsync().ConfigureAwait(false))
        {
            if (message.Decoded.Ok && message.CorrelationData is { Length: 8 } c
                && _streams.TryGetValue(BinaryPrimitives.ReadInt64LittleEndian(c), out var stream))
            {
                stream.Receive(message, _time);
            }
        }
    }

    /// <summary>Streams one generation; <paramref name="onToken"/> sees every token in order.</summary>
    public async Task<StreamReport> GenerateAsync(int[] prompt, SamplingParams sampling, ulong seed, string sessionId, int maxTokens, Action<int>? onToken, CancellationToken ct)
    {
        var connection = _connection ?? throw new InvalidOperationException("call StartAsync first");
        var id = Interlocked.Increment(ref _next);
        var correlation = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(correlation, id);
        var stream = new Stream(maxTokens, onToken, _serverId, _options.MaxAttempts);
        _streams[id] = stream;
        try
        {
            var request = new StreamRequest { SessionId = sessionId, DeviceId = _options.DeviceId, Prompt = prompt, Sampling = sampling.ToWire(), Seed = seed, MaxTokens = maxTokens };
            stream.Started = _time.GetTimestamp();
            var (payload, wire) = await connection.PublishAsync(TopicScheme.ServerStreams(_serverId, _options.DeviceId), request, TopicScheme.DeviceReplies(_options.DeviceId), correlation, ct).ConfigureAwait(false);
            // The whole stream must arrive within one request timeout per token gap; a silent server fails closed.
            while (!stream.Completion.Task.IsCompleted)
            {
                var progress = stream.Received;
                try
                {
                    await stream.Completion.Task.WaitAsync(_options.RequestTimeout, _time, ct).ConfigureAwait(false);
                }
                catch (TimeoutException) when (stream.Received != progress)
                {
                }
                catch (TimeoutException)
                {
                    throw new GenerationException($"server {_serverId} sent nothing for {_options.RequestTimeout.TotalSeconds:0.#} s ({stream.Received} of {maxTokens} tokens received)");
                }
            }

            var error = await stream.Completion.Task.ConfigureAwait(false);
            if (error is not null)
            {
                throw new GenerationException($"server {_serverId} refused the stream: {error.Code}: {error.Message}");
            }

            return stream.Report(sessionId, payload, wire);
        }
        finally
        {
            _streams.TryRemove(id, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        if (_pump is not null)
        {
            await _pump.ConfigureAwait(false);
        }
    }

    /// <summary>One stream's reassembly: tokens placed by index, delivered to the caller in order.</summary>
    private sealed class Stream(int maxTokens, Action<int>? onToken, string serverId, int maxRejected)
    {
        private readonly List<int> _tokens = new(maxTokens);
        private readonly List<double> _gaps = new(maxTokens);
        private readonly Lock _lock = new();
        private TokenPlacement? _placement;
        private int _delivered;
        private long _last;
        private long _downPayload, _downWire, _batchSum, _chunks, _rejected;
        private int _maxBatch;
        private TimeSpan _firstToken;
        private TimeSpan _elapsed;

        public long Started { get; set; }
        public int Received;
        public TaskCompletionSource<ErrorReply?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private TokenPlacement Placement => _placement ??= new TokenPlacement(_tokens, maxTokens, int.MaxValue);

        public void Receive(InboundMessage message, TimeProvider time)
        {
            lock (_lock)
            {
                _downPayload += message.PayloadBytes;
                _downWire += MqttFraming.PublishBytes(message.Topic, message.PayloadBytes, null, message.CorrelationData?.Length ?? 0);
                if (message.Decoded.Message is ErrorReply error)
                {
                    Completion.TrySetResult(error);
                    return;
                }

                if (message.Decoded.Message is not TokenChunk chunk)
                {
                    return;
                }

                try
                {
                    Placement.Place(chunk.Index, chunk.Tokens);
                }
                catch (ProtocolViolationException ex)
                {
                    if (++_rejected >= maxRejected)
                    {
                        Completion.TrySetException(new GenerationException($"server {serverId} kept sending invalid chunks ({_rejected} rejected): {ex.Message}"));
                    }

                    return;
                }

                _chunks++;
                _batchSum += chunk.BatchSize;
                _maxBatch = Math.Max(_maxBatch, chunk.BatchSize);
                Volatile.Write(ref Received, Placement.Held);
                var now = time.GetTimestamp();
                while (_delivered < _tokens.Count)
                {
                    if (_delivered == 0)
                    {
                        _firstToken = time.GetElapsedTime(Started, now);
                    }
                    else
                    {
                        _gaps.Add(time.GetElapsedTime(_last, now).TotalMilliseconds);
                    }

                    _last = now;
                    var token = _tokens[_delivered++];
                    onToken?.Invoke(token);
                }

                if (_delivered == maxTokens)
                {
                    _elapsed = time.GetElapsedTime(Started, now);
                    Completion.TrySetResult(null);
                }
            }
        }

        public StreamReport Report(string sessionId, long upPayload, long upWire)
        {
            lock (_lock)
            {
                return new StreamReport
                {
                    SessionId = sessionId,
                    Tokens = [.. _tokens],
                    Elapsed = _elapsed,
                    TimeToFirstToken = _firstToken,
                    TokenGapMillis = _gaps,
                    UplinkPayloadBytes = upPayload,
                    UplinkWireBytes = upWire,
                    DownlinkPayloadBytes = _downPayload,
                    DownlinkWireBytes = _downWire,
                    MeanBatch = _chunks == 0 ? 0 : (double)_batchSum / _chunks,
                    MaxBatch = _maxBatch,
                    Duplicates = _placement?.Duplicates ?? 0,
                    Rejected = _rejected,
                };
            }
        }
    }
}

/// <summary>What one streamed (server-only) generation did.</summary>
public sealed record StreamReport
{
    public required string SessionId { get; init; }
    public required IReadOnlyList<int> Tokens { get; init; }
    public TimeSpan Elapsed { get; init; }
    public TimeSpan TimeToFirstToken { get; init; }

    /// <summary>Time between consecutive tokens as the device received them.</summary>
    public IReadOnlyList<double> TokenGapMillis { get; init; } = [];
    public long UplinkPayloadBytes { get; init; }
    public long UplinkWireBytes { get; init; }
    public long DownlinkPayloadBytes { get; init; }
    public long DownlinkWireBytes { get; init; }
    public double MeanBatch { get; init; }

    /// <summary>The largest forward pass any chunk reported.</summary>
    public int MaxBatch { get; init; }

    /// <summary>Tokens delivered more than once (QoS 1 duplicates); each was ignored.</summary>
    public long Duplicates { get; init; }

    /// <summary>Chunks outside the stream or conflicting with a token already received; each was ignored.</summary>
    public long Rejected { get; init; }
}

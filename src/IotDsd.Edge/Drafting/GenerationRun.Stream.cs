using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Drafting;

/// <summary>A streamed round ended: every token it asked for is committed.</summary>
/// <param name="PassCost">The verifier's pass cost line from its last chunk (fixed ms, ms per token; 0, 0: not reported).</param>
internal sealed record StreamCompleted(int Tokens, double MeanBatch, int MaxBatch, (float FixedMs, float PerTokenMs) PassCost);

/// <summary>Verifier-side decoding: one streamed round, riding out the same faults as a speculative one.</summary>
internal sealed partial class GenerationRun
{
    /// <summary>
    /// Sends the outstanding streamed round and commits its chunks as they come (<paramref name="onCommitted"/> sees
    /// each step that committed tokens), through the run's one retry loop: a quiet gap of one request timeout, or a lost
    /// link, resends it from the committed length, and quiet gaps with the link up count towards leaving a silent
    /// verifier like unanswered requests do (any chunk resets that count). Returns <see cref="StreamCompleted"/>, null
    /// when the session moved to another verifier, or whatever else the verifier answered (an error, or a verdict from a
    /// verifier that does not stream).
    /// </summary>
    public Task<object?> StreamAsync(Action<RoundStep> onCommitted, CancellationToken ct)
    {
        var listener = _requester.Listen(_requester.NewCorrelationId());
        var violations = 0;
        long chunks = 0, batchSum = 0, tokens = 0;
        var maxBatch = 0;
        (float, float) passCost = default;
        return RunAsync();

        async Task<object?> RunAsync()
        {
            using (listener)
            {
                return await RetryAsync(AttemptAsync, attempt => Log.StreamQuiet(_logger, attempt, _options.RequestTimeout.TotalMilliseconds, _session.Committed.Count), ct)
                    .ConfigureAwait(false);
            }
        }

        async Task<Answer> AttemptAsync(int attempt, CancellationToken token)
        {
            await _requester.SendAsync(Topic, _session.ResumeStream(), listener.Id, token).ConfigureAwait(false);
            while (true)
            {
                try
                {
                    await listener.Reader.WaitToReadAsync(token).AsTask().WaitAsync(_options.RequestTimeout, _time, token).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    return Quiet; // ask again from what is committed
                }

                while (listener.Reader.TryRead(out var message))
                {
                    _lastProgress = _time.GetTimestamp();
                    _silentTimeouts = 0;
                    if (message.Decoded.Message is not TokenChunk chunk)
                    {
                        return new Answer(message.Decoded.Message!);
                    }

                    RoundStep step;
                    try
                    {
                        step = _session.ApplyChunk(chunk);
                    }
                    catch (ProtocolViolationException ex)
                    {
                        Log.BadChunk(_logger, ex.Message);
                        _metrics?.Error("invalid_chunk");
                        if (++violations >= _options.MaxAttempts)
                        {
                            throw new GenerationException($"verifier {Verifier} kept sending invalid chunks: {ex.Message}");
                        }

                        continue;
                    }

                    if (step.Kind == RoundStepKind.Ignored)
                    {
                        continue;
                    }

                    chunks++;
                    batchSum += chunk.BatchSize;
                    passCost = chunk.PassPerTokenMs > 0 || chunk.PassFixedMs > 0 ? (chunk.PassFixedMs, chunk.PassPerTokenMs) : passCost;
                    maxBatch = Math.Max(maxBatch, chunk.BatchSize);
                    tokens += step.Count;
                    if (step.Count > 0)
                    {
                        onCommitted(step);
                    }

                    if (step.Kind == RoundStepKind.Committed)
                    {
                        return new Answer(new StreamCompleted((int)tokens, (double)batchSum / chunks, maxBatch, passCost));
                    }
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 308, Level = LogLevel.Warning, Message = "Streamed round quiet for {TimeoutMs} ms (attempt {Attempt}); asking again from {Committed} committed tokens")]
        public static partial void StreamQuiet(ILogger logger, int attempt, double timeoutMs, int committed);

        [LoggerMessage(EventId = 309, Level = LogLevel.Warning, Message = "Invalid streamed chunk ignored: {Reason}")]
        public static partial void BadChunk(ILogger logger, string reason);
    }
}

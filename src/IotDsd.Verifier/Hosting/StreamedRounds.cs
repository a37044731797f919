using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Sessions;
using Microsoft.Extensions.Logging;

namespace IotDsd.Verifier.Hosting;

/// <summary>
/// The streamed rounds a verifier is decoding (verifier-side decoding, the ladder's lossless rung below γ = 1). Each
/// batched forward pass advances every stream it has room for by one token, alongside the speculative rounds of that
/// pass. Tokens go down as <see cref="TokenChunk"/>s: each stream keeps at most one chunk in flight and sends what was
/// decoded meanwhile in the next, so a fast model sends several tokens per message and a slow one one per pass.
/// </summary>
internal sealed partial class StreamedRounds(SessionTable sessions, MqttConnection connection, ILogger logger, TimeProvider time)
{
    private readonly List<Entry> _active = [];
    private int _next;

    /// <summary>True while any stream is still decoding.</summary>
    public bool Any => _active.Count > 0;

    /// <summary>Starts a checked streamed round; its first token is decoded in this pass.</summary>
    public void Start(string device, VerifierSession session, DraftRound round, InboundMessage request) =>
        _active.Add(new Entry(device, session, session.StartStream(round), request));

    /// <summary>
    /// A streamed round resent (a duplicate delivery, or a device that lost chunks and asks from what it has): resends
    /// the tokens already sent from <paramref name="from"/> without decoding them again; later ones follow as decoded,
    /// now under the resend's correlation.
    /// </summary>
    public void Resume(string device, VerifierSession session, int from, InboundMessage request, List<Task> replies, CancellationToken ct)
    {
        var stream = session.Stream!;
        var entry = _active.Find(e => e.Session == session && e.Stream == stream);
        if (entry is null && !stream.IsDecoded)
        {
            entry = new Entry(device, session, stream, request) { Sent = stream.Tokens.Count };
            _active.Add(entry); // decoding had stopped (a failed publish path, a lost entry): go on from where it stands
        }

        if (entry is not null)
        {
            entry.Request = request;
        }

        var sent = entry?.Sent ?? stream.Tokens.Count;
        if (sent > from || (entry is null && from == sent))
        {
            replies.Add(PublishAsync(device, request, Chunk(session, stream, from, sent, 0), ct));
        }
    }

    /// <summary>This pass's share: up to <paramref name="room"/> streams, round robin; streams whose session was closed,
    /// replaced, expired or moved on to a later round are dropped.</summary>
    public List<Entry> Take(int room)
    {
        _active.RemoveAll(e => sessions.Find(e.Device, e.Session.Open.SessionId) != e.Session || e.Session.Stream != e.Stream || e.Stream.IsDecoded);
        var count = Math.Min(room, _active.Count);
        var taken = new List<Entry>(count);
        for (var i = 0; i < count; i++)
        {
            taken.Add(_active[(_next + i) % _active.Count]);
        }

        _next = _active.Count == 0 ? 0 : (_next + count) % _active.Count;
        return taken;
    }

    /// <summary>The forward-pass share of a taken stream.</summary>
    public static FeedRequest Begin(Entry entry) => entry.Session.BeginStreamStep();

    /// <summary>After the pass: each taken stream chooses its token and sends what is ready.</summary>
    public int Complete(List<Entry> taken, int batchSize, (float FixedMs, float PerTokenMs) passCost, CancellationToken ct)
    {
        var now = time.GetTimestamp();
        foreach (var entry in taken)
        {
            entry.Session.CompleteStreamStep();
            entry.Session.LastUsedTicks = now;
            var decoded = entry.Stream.Tokens.Count;
            if (entry.Sent < decoded && (entry.Stream.IsDecoded || entry.InFlight is null || entry.InFlight.IsCompleted))
            {
                entry.InFlight = PublishAsync(entry.Device, entry.Request, Chunk(entry.Session, entry.Stream, entry.Sent, decoded, batchSize, passCost), ct);
                entry.Sent = decoded;
            }

            if (entry.Stream.IsDecoded)
            {
                _active.Remove(entry);
            }
        }

        return taken.Count;
    }

    /// <summary>The pass failed: these streams end here (the caller drops their sessions and tells their devices).</summary>
    public void Fail(List<Entry> taken) => _active.RemoveAll(taken.Contains);

    private static TokenChunk Chunk(
        VerifierSession session, VerifierSession.DecodingStream stream, int from, int to, int batchSize, (float FixedMs, float PerTokenMs) passCost = default) => new()
    {
        SessionId = session.Open.SessionId,
        Epoch = session.Epoch,
        Round = stream.Round,
        Index = stream.Start + from,
        Tokens = [.. stream.Tokens.Skip(from).Take(to - from)],
        Done = stream.IsDecoded && to == stream.Total,
        BatchSize = batchSize,
        PassFixedMs = passCost.FixedMs,
        PassPerTokenMs = passCost.PerTokenMs,
    };

    private async Task PublishAsync(string device, InboundMessage request, TokenChunk chunk, CancellationToken ct)
    {
        try
        {
            await connection.PublishAsync(request.ResponseTopic ?? TopicScheme.DeviceReplies(device), chunk, null, request.CorrelationData, ct).ConfigureAwait(false);
        }
        catch (MqttPublishException ex)
        {
            // The device asks again from what it has; the tokens are kept, so the resend gets the same ones.
            Log.ChunkFailed(logger, device, ex.Message);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>One stream being decoded, and what of it has been sent.</summary>
    internal sealed class Entry(string device, VerifierSession session, VerifierSession.DecodingStream stream, InboundMessage request)
    {
        public string Device { get; } = device;
        public VerifierSession Session { get; } = session;
        public VerifierSession.DecodingStream Stream { get; } = stream;

        /// <summary>The latest request for the stream: chunks go to its reply topic under its correlation.</summary>
        public InboundMessage Request { get; set; } = request;

        /// <summary>Tokens published so far.</summary>
        public int Sent { get; set; }

        public Task? InFlight { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 215, Level = LogLevel.Warning, Message = "Could not publish a streamed chunk to device {Device}: {Reason}")]
        public static partial void ChunkFailed(ILogger logger, string device, string reason);
    }
}

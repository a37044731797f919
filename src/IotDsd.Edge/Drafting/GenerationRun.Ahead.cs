using IotDsd.Contracts.Messages;
using IotDsd.Messaging.Connections;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// A round sent ahead of its predecessor's verdict: one send under its own correlation id, not retried. Abandoning it
/// stops the wait for its reply, never its publish (a publish cancelled while its PUBACK is due reads as a timeout on
/// the link).
/// </summary>
internal sealed class AheadSend(string verifier, long id, Task<InboundMessage?> reply, CancellationTokenSource cancel, IDisposable listener) : IDisposable
{
    public string Verifier { get; } = verifier;
    public long Id { get; } = id;

    /// <summary>The verifier's reply (null: none within the request timeout).</summary>
    public Task<InboundMessage?> Reply { get; } = reply;

    /// <summary>Stops waiting for the reply (a late one is dropped as unmatched).</summary>
    public void Cancel()
    {
        try
        {
            cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        Cancel();
        listener.Dispose();
    }
}

/// <summary>Pipelined rounds: sending a round ahead, and keeping retries off the session while the loop drafts.</summary>
internal sealed partial class GenerationRun
{
    private volatile TaskCompletionSource? _drafting;

    /// <summary>Sends <paramref name="request"/> (a round drafted ahead) once; its reply is awaited by the exchange
    /// that takes it over, or abandoned.</summary>
    public AheadSend SendAhead(DraftRound request, CancellationToken ct)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var listener = _requester.Listen(_requester.NewCorrelationId());
        var reply = ReplyAsync(_requester.SendAsync(Topic, request, listener.Id, ct), listener, cts.Token);
        _ = reply.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return new AheadSend(Verifier, listener.Id, reply, cts, new Both(listener, cts));
    }

    /// <summary>The first reply under the send's correlation id, or null after the request timeout (from the publish).</summary>
    private async Task<InboundMessage?> ReplyAsync(Task send, MqttRequester.Listener listener, CancellationToken ct)
    {
        await send.ConfigureAwait(false);
        try
        {
            return await listener.Reader.ReadAsync(ct).AsTask().WaitAsync(_options.RequestTimeout, _time, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null;
        }
    }

    private sealed class Both(IDisposable first, IDisposable second) : IDisposable
    {
        public void Dispose()
        {
            first.Dispose();
            second.Dispose();
        }
    }

    /// <summary>
    /// Marks the loop as drafting on the session while an exchange is in flight: until disposed, the exchange's retries
    /// (which may show draft-only text or move the session) wait.
    /// </summary>
    public IDisposable Drafting()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _drafting = gate;
        return new Gate(this, gate);
    }

    private Task IdleAsync() => _drafting?.Task ?? Task.CompletedTask;

    private sealed class Gate(GenerationRun run, TaskCompletionSource gate) : IDisposable
    {
        public void Dispose()
        {
            Interlocked.CompareExchange(ref run._drafting, null, gate);
            gate.TrySetResult();
        }
    }

    /// <summary>The first attempt of an exchange whose request was already sent ahead: waits for that send's reply.</summary>
    private static async Task<Answer> TakeOverAsync(AheadSend sent, CancellationToken token)
    {
        using var stop = token.Register(sent.Cancel);
        var reply = await sent.Reply.WaitAsync(token).ConfigureAwait(false);
        return reply is null ? Quiet : new Answer(reply.Decoded.Message!);
    }
}

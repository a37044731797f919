using IotDsd.Contracts.Messages;
using IotDsd.Messaging.Connections;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// A round sent ahead of its predecessor's verdict: one send under its own correlation id, not retried. Abandoning it
/// only stops the caller's wait: the send and its wait for a reply run on (a publish cancelled while its PUBACK is due
/// reads as a timeout on the link), and a late reply is dropped when its wait ends.
/// </summary>
internal sealed class AheadSend(string verifier, long id, Task<InboundMessage?> reply)
{
    public string Verifier { get; } = verifier;
    public long Id { get; } = id;

    /// <summary>The verifier's reply (null: none within the request timeout).</summary>
    public Task<InboundMessage?> Reply { get; } = reply;
}

/// <summary>Pipelined rounds: sending a round ahead, and keeping retries off the session while the loop drafts.</summary>
internal sealed partial class GenerationRun
{
    /// <summary>Nodes a token-tree round may carry on the verifier the session is open on: what it granted (at most what
    /// the session asked for); 0 chains only (older verifiers do not say).</summary>
    public int VerifierTreeNodes { get; private set; }

    /// <summary>The verifier the session is open on takes token trees.</summary>
    public bool VerifierTrees => VerifierTreeNodes > 0;

    /// <summary>The verifier the session is open on understands rounds sent ahead (older ones do not: none are sent).</summary>
    public bool VerifierConditionalRounds { get; private set; }

    /// <summary>The verifier's load when it last opened the session: its sessions and pass cost line (zeros from a verifier that sends none).</summary>
    public (int Sessions, double PassFixedMs, double PassPerTokenMs) VerifierLoadAtOpen { get; private set; }

    private void Opened(SessionOpened opened)
    {
        VerifierTreeNodes = opened.MaxTreeNodes;
        VerifierConditionalRounds = opened.ConditionalRounds;
        VerifierLoadAtOpen = (opened.Sessions, opened.PassFixedMs, opened.PassPerTokenMs);
    }

    private volatile TaskCompletionSource? _drafting;

    /// <summary>Sends <paramref name="request"/> (a round drafted ahead) once; its reply is awaited by the exchange
    /// that takes it over, or abandoned.</summary>
    public AheadSend SendAhead(DraftRound request, CancellationToken ct)
    {
        var id = _requester.NewCorrelationId();
        var reply = _requester.RequestAsync(Topic, request, _options.RequestTimeout, id, ct);
        _ = reply.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return new AheadSend(Verifier, id, reply);
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
        var reply = await sent.Reply.WaitAsync(token).ConfigureAwait(false);
        return reply is null ? Quiet : new Answer(reply.Decoded.Message!);
    }
}

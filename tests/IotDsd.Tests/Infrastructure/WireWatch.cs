using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Messaging.Presence;

namespace IotDsd.Tests.Infrastructure;

/// <summary>One message of a device's conversation as the broker carried it, stamped when the watcher received it.</summary>
public sealed record WireSeen(long At, string Topic, object Message, int RoundsBefore);

/// <summary>
/// Watches one device's traffic on the broker from a client of its own (<see cref="RawClient"/>): the requests it
/// sends to any verifier, the replies it gets, its own status and the verifiers' statuses. Tests time faults by what is on the wire
/// (a round in flight, a follow-up, a streamed round) instead of by hooks in the product, and read from it when the
/// next token was committed after a restart. After a broker restart, <see cref="ReconnectAsync"/> watches again.
/// </summary>
public sealed class WireWatch : IAsyncDisposable
{
    private readonly string _device;
    private readonly List<WireSeen> _seen = [];
    private readonly List<(Func<WireSeen, bool> When, TaskCompletionSource<WireSeen> Done)> _waiters = [];
    private RawClient? _client;
    private int _rounds;

    private WireWatch(string device)
    {
        _device = device;
    }

    /// <summary>Rounds completed so far (verdicts that commit, and finished streamed rounds).</summary>
    public int Rounds => Volatile.Read(ref _rounds);

    /// <summary>Everything seen so far, in arrival order.</summary>
    public IReadOnlyList<WireSeen> Seen
    {
        get
        {
            lock (_seen)
            {
                return [.. _seen];
            }
        }
    }

    public static async Task<WireWatch> StartAsync(int port, string deviceId)
    {
        var watch = new WireWatch(deviceId);
        await watch.ReconnectAsync(port);
        return watch;
    }

    /// <summary>Connects (again) and subscribes; what was seen before stays.</summary>
    public async Task ReconnectAsync(int port)
    {
        await DropClientAsync();
        var client = await RawClient.ConnectAsync(
            port, $"watch-{_device}-{Random.Shared.Next():x}", $"iotdsd/v1/verifiers/+/rounds/{_device}", $"iotdsd/v1/devices/{_device}/replies", "iotdsd/v1/verifiers/+/status", $"iotdsd/v1/devices/{_device}/status");
        client.Arrived += OnArrived;
        _client = client;
    }

    /// <summary>True for a reply that commits tokens: a final verdict, or a chunk of a streamed round that carries tokens.</summary>
    public static bool Commits(object message) => message switch
    {
        Verdict v => v.Kind != VerdictKind.Proposals,
        TokenChunk c => c.Round > 0 && c.Tokens.Length > 0,
        _ => false,
    };

    /// <summary>Waits for the first message from now on that satisfies <paramref name="when"/>.</summary>
    public async Task<WireSeen> WaitForAsync(Func<WireSeen, bool> when, TimeSpan timeout, string what)
    {
        var done = new TaskCompletionSource<WireSeen>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_seen)
        {
            _waiters.Add((when, done));
        }

        try
        {
            return await done.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{what} was not seen on the wire within {timeout.TotalSeconds:0} s ({Rounds} rounds seen)");
        }
    }

    /// <summary>Milliseconds from <paramref name="since"/> (a <see cref="Stopwatch"/> timestamp) to the first committing reply after it; null if none.</summary>
    public double? MillisToCommitAfter(long since)
    {
        lock (_seen)
        {
            var first = _seen.FirstOrDefault(s => s.At >= since && Commits(s.Message));
            return first is null ? null : Stopwatch.GetElapsedTime(since, first.At).TotalMilliseconds;
        }
    }

    /// <summary>Milliseconds from <paramref name="since"/> to the first online status on <paramref name="statusTopic"/> after it; null if none.</summary>
    public double? MillisToOnlineAfter(long since, string statusTopic)
    {
        lock (_seen)
        {
            var first = _seen.FirstOrDefault(s => s.At >= since && s.Topic == statusTopic && s.Message is PresencePayload { State: "online" });
            return first is null ? null : Stopwatch.GetElapsedTime(since, first.At).TotalMilliseconds;
        }
    }

    private void OnArrived(string topic, byte[] payload)
    {
        var at = Stopwatch.GetTimestamp();
        object? message;
        if (topic.EndsWith("/status", StringComparison.Ordinal))
        {
            message = PresencePayload.TryParse(payload);
        }
        else
        {
            var decoded = WireCodec.Decode(new ReadOnlyMemory<byte>(payload));
            message = decoded.Message;
        }

        if (message is null)
        {
            return;
        }

        List<TaskCompletionSource<WireSeen>> fire = [];
        WireSeen seen;
        lock (_seen)
        {
            seen = new WireSeen(at, topic, message, _rounds);
            _seen.Add(seen);
            if (message is Verdict { Kind: not VerdictKind.Proposals } or TokenChunk { Done: true, Round: > 0 })
            {
                Interlocked.Increment(ref _rounds);
            }

            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].When(seen))
                {
                    fire.Add(_waiters[i].Done);
                    _waiters.RemoveAt(i);
                }
            }
        }

        foreach (var done in fire)
        {
            done.TrySetResult(seen);
        }
    }

    private async Task DropClientAsync()
    {
        if (_client is { } old)
        {
            old.Arrived -= OnArrived;
            _client = null;
            try
            {
                await old.DisposeAsync();
            }
            catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
            {
                // The broker went away under it (a restart): nothing to disconnect from.
            }
        }
    }

    public async ValueTask DisposeAsync() => await DropClientAsync();
}

using System.Diagnostics;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sessions;
using IotDsd.Verifier.Sessions;

namespace IotDsd.Verifier.Limits;

/// <summary>A request refused by a limit: the code and message for the error reply.</summary>
public readonly record struct LimitRefusal(LimitKind Kind, ErrorCode Code, string Message);

/// <summary>
/// Enforces <see cref="VerifierLimits"/> per device: a token bucket on requests, caps on draft length, prompt length,
/// session length and sessions held, and an account of the memory each device's sessions hold. Used only from the
/// verifier's single processing loop, so it needs no locks; per-device state is dropped once a device is idle.
/// </summary>
public sealed class LimitGuard
{
    /// <summary>Accounted bytes of a session beyond its cache and rows: session object, digest, maps.</summary>
    public const int SessionOverheadBytes = 4096;

    private readonly Dictionary<string, DeviceState> _devices = new(StringComparer.Ordinal);
    private readonly VerifierLimits _limits;
    private readonly int _vocab;
    private readonly TimeProvider _time;
    private readonly SessionTable _sessions;
    private long _nextSweep;

    /// <summary>What the memory account charges per cached token where neither the limits nor the model say.</summary>
    public const int FallbackBytesPerCachedToken = 1024;

    private long _accounted;

    /// <param name="modelBytesPerToken">The target model's cache bytes per token (<c>ILanguageModel.CacheBytesPerToken</c>); 0 when unknown.</param>
    public LimitGuard(VerifierLimits limits, SessionTable sessions, int vocabSize, TimeProvider time, long modelBytesPerToken = 0)
    {
        if (limits.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(limits));
        }

        _limits = limits;
        _sessions = sessions;
        _vocab = vocabSize;
        _time = time;
        BytesPerCachedToken = limits.BytesPerCachedToken ?? (modelBytesPerToken > 0 ? modelBytesPerToken : FallbackBytesPerCachedToken);
    }

    /// <summary>What the memory account charges per cached token: the limits' figure, else the model's.</summary>
    public long BytesPerCachedToken { get; }

    /// <summary>Accounted bytes of every device's live sessions, as of the last <see cref="Account"/> (readable from any thread).</summary>
    public long AccountedBytes => Interlocked.Read(ref _accounted);

    /// <summary>Recomputes <see cref="AccountedBytes"/>; called from the processing loop after each batch.</summary>
    public long Account()
    {
        long total = 0;
        foreach (var (device, state) in _devices)
        {
            Live(state, device);
            total += Memory(state, except: null);
        }

        Interlocked.Exchange(ref _accounted, total);
        return total;
    }

    public LimitCounters Counters { get; } = new();

    /// <summary>Devices with state held now.</summary>
    public int TrackedDevices => _devices.Count;

    /// <summary>Counts a payload the decoder refused as too large.</summary>
    public void ObserveDecode(ErrorCode? error)
    {
        if (error == ErrorCode.TooLarge)
        {
            Counters.Increment(LimitKind.PayloadSize);
        }
    }

    /// <summary>Takes one request from the device's token bucket; refuses when it is empty.</summary>
    public LimitRefusal? Admit(string device)
    {
        var now = _time.GetTimestamp();
        SweepIfDue(now);
        var state = State(device, now);
        if (Take(ref state.Requests, ref state.RequestsRefilled, now, _limits.RequestsPerSecond, _limits.RequestBurst))
        {
            return null;
        }

        return Refuse(LimitKind.RequestRate, ErrorCode.Overloaded,
            $"device '{device}' exceeds {_limits.RequestsPerSecond:0.#} requests/s (burst {_limits.RequestBurst}); slow down");
    }

    /// <summary>Whether a refusal to <paramref name="device"/> may be answered (and logged) now, or only counted.</summary>
    public bool AllowErrorReply(string device)
    {
        var now = _time.GetTimestamp();
        var state = State(device, now);
        return Take(ref state.Replies, ref state.RepliesRefilled, now, _limits.ErrorRepliesPerSecond, _limits.ErrorReplyBurst);
    }

    /// <summary>Token bucket: refills at <paramref name="rate"/> up to <paramref name="burst"/>, takes one if it can.</summary>
    private static bool Take(ref double tokens, ref long refilled, long now, double rate, int burst)
    {
        tokens = Math.Min(burst, tokens + ((now - refilled) / (double)Stopwatch.Frequency * rate));
        refilled = now;
        if (tokens < 1)
        {
            return false;
        }

        tokens -= 1;
        return true;
    }

    /// <summary>The open as this verifier grants it: a token-tree budget above <see cref="VerifierLimits.MaxTreeNodes"/>
    /// is lowered to it (the device learns the grant from <see cref="SessionOpened.MaxTreeNodes"/> and drafts within it).</summary>
    public OpenSession Granted(OpenSession open) =>
        open.MaxTreeNodes > _limits.MaxTreeNodes ? open with { MaxTreeNodes = _limits.MaxTreeNodes } : open;

    /// <summary>Checks a new or re-opened session against the draft-length, session-count and memory limits.</summary>
    public LimitRefusal? CheckOpen(string device, OpenSession open)
    {
        if (open.MaxGamma > _limits.MaxGamma)
        {
            return Refuse(LimitKind.Gamma, ErrorCode.InvalidRequest, $"max gamma {open.MaxGamma} exceeds this verifier's limit of {_limits.MaxGamma}");
        }

        var existing = _sessions.Find(device, open.SessionId);
        var state = State(device, _time.GetTimestamp());
        var live = Live(state, device);
        if (existing is null && live >= _limits.MaxSessionsPerDevice)
        {
            return Refuse(LimitKind.SessionsPerDevice, ErrorCode.Overloaded,
                $"device '{device}' holds its maximum of {_limits.MaxSessionsPerDevice} sessions; close one first");
        }

        var others = Memory(state, except: existing);
        var needed = others + SessionBytes(0) + TransientBytes(Math.Max(open.MaxGamma, open.MaxTreeNodes));
        return needed > _limits.MaxDeviceMemoryBytes
            ? Refuse(LimitKind.DeviceMemory, ErrorCode.Overloaded,
                $"device '{device}' would hold {needed >> 10} KiB of verifier memory, over its limit of {_limits.MaxDeviceMemoryBytes >> 10} KiB; close sessions first")
            : null;
    }

    /// <summary>Remembers a session the verifier now holds for <paramref name="device"/>.</summary>
    public void Opened(string device, VerifierSession session)
    {
        var state = State(device, _time.GetTimestamp());
        state.Sessions.RemoveAll(s => s.Open.SessionId == session.Open.SessionId);
        state.Sessions.Add(session);
    }

    /// <summary>Checks a round that the session accepted against the prompt, session-length and memory limits.</summary>
    public LimitRefusal? CheckRound(string device, VerifierSession session, DraftRound round)
    {
        if (round.Pending.Length > _limits.MaxPromptTokens)
        {
            return Refuse(LimitKind.PromptLength, ErrorCode.TooLarge,
                $"round carries {round.Pending.Length} new prefix tokens, over the limit of {_limits.MaxPromptTokens}; shorten the prompt");
        }

        var held = (long)round.CommittedLength + Math.Max(round.Draft.Length, round.Stream);
        if (held > _limits.MaxSessionTokens)
        {
            return Refuse(LimitKind.SessionTokens, ErrorCode.TooLarge,
                $"session would hold {held} tokens, over the limit of {_limits.MaxSessionTokens}; start a new session");
        }

        var state = State(device, _time.GetTimestamp());
        Live(state, device);
        var needed = Memory(state, except: session) + SessionBytes(held) + TransientBytes(round.Draft.Length);
        return needed > _limits.MaxDeviceMemoryBytes
            ? Refuse(LimitKind.DeviceMemory, ErrorCode.TooLarge,
                $"device '{device}' would hold {needed >> 10} KiB of verifier memory, over its limit of {_limits.MaxDeviceMemoryBytes >> 10} KiB; close sessions or shorten them")
            : null;
    }

    /// <summary>Accounted bytes of <paramref name="device"/>'s live sessions.</summary>
    public long DeviceMemory(string device)
    {
        if (!_devices.TryGetValue(device, out var state))
        {
            return 0;
        }

        Live(state, device);
        return Memory(state, except: null);
    }

    /// <summary>A session's lasting footprint: its cache, the two probability rows it keeps, and fixed overhead.</summary>
    private long SessionBytes(long tokens) => SessionOverheadBytes + (2L * _vocab * sizeof(float)) + (tokens * BytesPerCachedToken);

    /// <summary>What one round of γ drafts allocates while it is verified: logits and sampling rows, γ+1 each.</summary>
    private long TransientBytes(int gamma) => 2L * (gamma + 1) * _vocab * sizeof(float);

    private long Memory(DeviceState state, VerifierSession? except)
    {
        long total = 0;
        foreach (var s in state.Sessions)
        {
            if (!ReferenceEquals(s, except))
            {
                total += SessionBytes(s.Known);
            }
        }

        return total;
    }

    /// <summary>Drops sessions the table no longer holds (closed, expired, replaced); returns how many remain.</summary>
    private int Live(DeviceState state, string device)
    {
        state.Sessions.RemoveAll(s => !ReferenceEquals(_sessions.Find(device, s.Open.SessionId), s));
        return state.Sessions.Count;
    }

    private LimitRefusal Refuse(LimitKind kind, ErrorCode code, string message)
    {
        Counters.Increment(kind);
        return new LimitRefusal(kind, code, message);
    }

    private DeviceState State(string device, long now)
    {
        if (!_devices.TryGetValue(device, out var state))
        {
            state = new DeviceState { Requests = _limits.RequestBurst, RequestsRefilled = now, Replies = _limits.ErrorReplyBurst, RepliesRefilled = now };
            _devices[device] = state;
        }

        return state;
    }

    /// <summary>Every 10 s, forgets devices with no sessions whose bucket has refilled: they look like new devices.</summary>
    private void SweepIfDue(long now)
    {
        if (now < _nextSweep)
        {
            return;
        }

        _nextSweep = now + (10 * Stopwatch.Frequency);
        var refill = (long)(Math.Max(_limits.RequestBurst / _limits.RequestsPerSecond, _limits.ErrorReplyBurst / _limits.ErrorRepliesPerSecond) * Stopwatch.Frequency);
        var idle = _devices.Where(kv => Live(kv.Value, kv.Key) == 0 && now - Math.Max(kv.Value.RequestsRefilled, kv.Value.RepliesRefilled) >= refill).Select(kv => kv.Key).ToList();
        foreach (var device in idle)
        {
            _devices.Remove(device);
        }
    }

    private sealed class DeviceState
    {
        public double Requests;
        public long RequestsRefilled;
        public double Replies;
        public long RepliesRefilled;
        public List<VerifierSession> Sessions { get; } = [];
    }
}

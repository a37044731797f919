using System.Diagnostics;
using IotDsd.Core.Models;
using IotDsd.Core.Sessions;

namespace IotDsd.Verifier.Sessions;

/// <summary>
/// The verifier's global KV-cache budget: every live session's cached tokens × the target's bytes per token
/// (a transformer's real KV shape: layers × 2 × kv heads × head dim × element size) must fit in
/// <see cref="BudgetBytes"/>. A new session reserves its generation (<c>MaxTokens</c> + γ + 1 tokens) at open; a
/// round must fit what the session will hold after it. When one does not fit, sessions idle for at least
/// <see cref="EvictIdle"/> are dropped, least recently used first (a device whose session was evicted gets the usual
/// "expired" answer and reopens); if that is not enough the request is refused as <c>Overloaded</c> and counted.
/// </summary>
/// <remarks>
/// A target that keeps every session in one KV pool (<see cref="IKvPoolModel"/>: every slot as long as the longest live
/// session, slots grown by doubling) holds more than the sum of its sessions' tokens. With one, the budget counts what
/// the pool would hold instead: its slots for the live sessions × the longest session's positions, so that the pool
/// itself, in host or GPU memory, never outgrows the budget.
/// </remarks>
public sealed class KvBudget
{
    /// <summary>The share of the memory available to the process that the default budget takes.</summary>
    public const double DefaultShare = 0.5;

    private long _refusals;
    private long _evictions;
    private long _heldTokens = -1; // tokens the live sessions hold, counted at the pass's start and kept up to date in it; −1: count on demand
    private readonly Func<int, long, long?>? _poolPositions;
    private (int Count, long Longest)? _shape; // with a pool: live sessions and the longest, counted at the pass's start

    /// <param name="budgetBytes">The budget.</param>
    /// <param name="bytesPerToken">Bytes one cached token (one pool position) takes.</param>
    /// <param name="evictIdle">How long a session must be idle before it may be evicted.</param>
    /// <param name="pool">The target when it keeps sessions in one pool (<see cref="IKvPoolModel"/>); null: count tokens.</param>
    public KvBudget(long budgetBytes, long bytesPerToken, TimeSpan evictIdle, IKvPoolModel? pool = null)
    {
        if (pool?.KvPoolPositions(1, 1) is not null)
        {
            _poolPositions = pool.KvPoolPositions;
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(budgetBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bytesPerToken, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(evictIdle, TimeSpan.FromSeconds(1));
        BudgetBytes = budgetBytes;
        BytesPerToken = bytesPerToken;
        EvictIdle = evictIdle;
    }

    /// <summary>Half of the memory available to the process (its cgroup limit, else the machine's).</summary>
    public static long DefaultBytes() => Math.Max(64L << 20, (long)(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes * DefaultShare));

    public long BudgetBytes { get; }
    public long BytesPerToken { get; }
    public TimeSpan EvictIdle { get; }

    /// <summary>Opens and rounds refused because the budget was full.</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>Idle sessions dropped to make room.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Bytes the live sessions' caches hold (cached tokens × bytes per token).</summary>
    public static long Held(SessionTable sessions, long bytesPerToken, VerifierSession? except = null)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        long tokens = 0;
        foreach (var (_, s) in sessions.All)
        {
            if (!ReferenceEquals(s, except)) tokens += s.Known;
        }
        return tokens * bytesPerToken;
    }

    /// <summary>
    /// Counts what the live sessions hold once, at the start of a verifier pass (their tokens, or for a pool target their
    /// number and the longest), so that admitting each round of the pass costs O(1) rather than a walk over every session.
    /// </summary>
    public void BeginPass(SessionTable sessions)
    {
        _heldTokens = _poolPositions is null ? Held(sessions, 1) : -1;
        _shape = _poolPositions is null ? null : Shape(sessions);
    }

    /// <summary>True when the budget counts the target's pool (slots × the longest session) rather than tokens.</summary>
    public bool CountsPool => _poolPositions is not null;

    /// <summary>Bytes the live sessions hold as the budget counts them: the pool's for a pool target, else their tokens'.</summary>
    public long HeldBytes(SessionTable sessions)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        return _poolPositions is null ? Held(sessions, BytesPerToken) : PoolBytes(Shape(sessions));
    }

    private static (int Count, long Longest) Shape(SessionTable sessions)
    {
        int count = 0;
        long longest = 0;
        foreach (var (_, s) in sessions.All)
        {
            count++;
            longest = Math.Max(longest, s.Known);
        }

        return (count, longest);
    }

    private long PoolBytes((int Count, long Longest) shape) =>
        shape.Count == 0 ? 0 : (_poolPositions!(shape.Count, shape.Longest) ?? 0) * BytesPerToken;

    /// <summary>
    /// Bytes the caches would take once <paramref name="session"/> (null: a new one, at its reservation) holds
    /// <paramref name="tokens"/>: the live sessions' tokens and these, or for a pool target the pool with one more
    /// session for an open and every slot as long as the longest.
    /// </summary>
    private long After(SessionTable sessions, VerifierSession? session, long tokens)
    {
        if (_poolPositions is null)
        {
            long held = _heldTokens >= 0 ? (_heldTokens - (session?.Known ?? 0)) * BytesPerToken : Held(sessions, BytesPerToken, session);
            return held + (tokens * BytesPerToken);
        }

        var (count, longest) = _shape ?? Shape(sessions);
        return PoolBytes((count + (session is null ? 1 : 0), Math.Max(longest, tokens)));
    }

    /// <summary>Null when a new session with <paramref name="maxTokens"/> and <paramref name="maxGamma"/> fits (evicting idle ones if needed); else the refusal's reason.</summary>
    public string? AdmitOpen(SessionTable sessions, int maxTokens, int maxGamma, long nowTicks)
    {
        long reserve = Math.Max(64L, (long)Math.Max(0, maxTokens) + Math.Max(0, maxGamma) + 1);
        return Admit(sessions, null, reserve, nowTicks, "a new session");
    }

    /// <summary>Null when <paramref name="session"/> may hold <paramref name="tokens"/> after its round (evicting idle ones if needed); else the refusal's reason.</summary>
    public string? AdmitRound(SessionTable sessions, VerifierSession session, long tokens, long nowTicks) =>
        Admit(sessions, session, tokens, nowTicks, "this round");

    private string? Admit(SessionTable sessions, VerifierSession? session, long tokens, long nowTicks, string what)
    {
        long total = After(sessions, session, tokens);
        if (total > BudgetBytes)
        {
            long cutoff = nowTicks - (long)(EvictIdle.TotalSeconds * Stopwatch.Frequency);
            var idle = sessions.All.Where(e => !ReferenceEquals(e.Session, session) && e.Session.LastUsedTicks <= cutoff)
                .OrderBy(e => e.Session.LastUsedTicks).ToList();
            foreach (var (device, s) in idle)
            {
                if (total <= BudgetBytes) break;
                sessions.Evict(device, s.Open.SessionId);
                Interlocked.Increment(ref _evictions);
                if (_heldTokens >= 0) _heldTokens -= s.Known;
                if (_shape is not null) _shape = Shape(sessions);
                total = After(sessions, session, tokens);
            }
        }

        if (total <= BudgetBytes)
        {
            Hold(session, tokens);
            return null;
        }

        Interlocked.Increment(ref _refusals);
        var takes = _poolPositions is null
            ? $"needs {tokens * BytesPerToken >> 10} KiB and would bring the sessions' caches to {total >> 20} MiB"
            : $"would make the KV pool {total >> 20} MiB (every slot as long as the longest session, {Math.Max((_shape ?? Shape(sessions)).Longest, tokens)} tokens)";
        return $"the verifier's KV budget is full: {what} {takes} of {BudgetBytes >> 20} MiB " +
            $"(none idle for {EvictIdle.TotalSeconds:0} s to evict); retry later or use another verifier";
    }

    /// <summary>Within a pass: an admitted round's session will hold <paramref name="tokens"/>; an open holds nothing yet,
    /// but in a pool takes a slot as long as its reservation.</summary>
    private void Hold(VerifierSession? session, long tokens)
    {
        if (_heldTokens >= 0 && session is not null)
        {
            _heldTokens += tokens - session.Known;
        }

        if (_shape is var (count, longest))
        {
            _shape = (count + (session is null ? 1 : 0), Math.Max(longest, tokens));
        }
    }
}

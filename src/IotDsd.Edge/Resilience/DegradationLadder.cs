namespace IotDsd.Edge.Resilience;

/// <summary>The rungs of the degradation ladder (docs/protocol.md §5), from normal down to the one lossy level.</summary>
public enum DegradationLevel
{
    /// <summary>Speculative rounds with the configured γ.</summary>
    Normal = 0,

    /// <summary>Speculative rounds with half the γ (fewer bytes per round, less lost per failed round).</summary>
    ReducedGamma = 1,

    /// <summary>Speculative rounds with γ = 1.</summary>
    GammaOne = 2,

    /// <summary>No draft: the verifier decodes up to K tokens per request and streams them down (or, with streaming
    /// off, one token per γ = 0 round). Lossless.</summary>
    VerifierDecoding = 3,

    /// <summary>The link is down: draft-only text is shown, flagged unverified, and never committed. Lossy.</summary>
    Offline = 4,
}

/// <summary>
/// Where a device stands on the degradation ladder, and how long it spent on each rung. Failed exchanges step down
/// one rung (when γ may adapt), a run of successes climbs one back, a lost link jumps to <see cref="DegradationLevel.Offline"/>
/// and a returned link goes back to the rung it left. Changing γ keeps greedy text identical; in sampling modes it
/// changes which (equally exact) sample a seed names, so there γ adapts only when allowed.
/// </summary>
public sealed class DegradationLadder
{
    private readonly int _gamma;
    private readonly bool _adaptGamma;
    private readonly bool _pinned;
    private readonly int _climbAfter;
    private readonly TimeProvider _time;
    private readonly Dictionary<DegradationLevel, long> _ticks = [];
    private readonly Lock _lock = new();
    private DegradationLevel _level;
    private DegradationLevel _beforeOffline;
    private long _since;
    private int _successes;
    private long _transitions;

    /// <param name="gamma">The normal γ.</param>
    /// <param name="adaptGamma">Whether failures may lower γ (rungs 1–3).</param>
    /// <param name="climbAfter">Successful rounds in a row before climbing one rung.</param>
    /// <param name="time">Clock for time at each level.</param>
    /// <param name="pinned">Hold this rung: failures and successes do not move the ladder; a lost link still does.</param>
    public DegradationLadder(int gamma, bool adaptGamma, int climbAfter = 8, TimeProvider? time = null, DegradationLevel? pinned = null)
    {
        _pinned = pinned is not null;
        _level = pinned ?? DegradationLevel.Normal;
        _gamma = Math.Max(1, gamma);
        _adaptGamma = adaptGamma;
        _climbAfter = Math.Max(1, climbAfter);
        _time = time ?? TimeProvider.System;
        _since = _time.GetTimestamp();
    }

    /// <summary>Raised on every change of level, with (from, to).</summary>
    public event Action<DegradationLevel, DegradationLevel>? Changed;

    public DegradationLevel Level
    {
        get
        {
            lock (_lock)
            {
                return _level;
            }
        }
    }

    /// <summary>True on the lossy rung: anything shown now is unverified.</summary>
    public bool IsLossy => Level == DegradationLevel.Offline;

    /// <summary>Level changes so far.</summary>
    public long Transitions => Interlocked.Read(ref _transitions);

    /// <summary>γ for the next round at the current level.</summary>
    public int Gamma => Level switch
    {
        DegradationLevel.ReducedGamma => Math.Max(1, _gamma / 2),
        DegradationLevel.GammaOne => 1,
        DegradationLevel.VerifierDecoding => 0,
        _ => _gamma,
    };

    /// <summary>A round was answered and committed.</summary>
    public void Success()
    {
        DegradationLevel? to = null;
        lock (_lock)
        {
            if (!_pinned && _level is > DegradationLevel.Normal and < DegradationLevel.Offline && ++_successes >= _climbAfter)
            {
                to = _level - 1;
            }
        }

        if (to is { } level)
        {
            Move(level);
        }
    }

    /// <summary>An exchange failed (timeout, failed send) while the link was up.</summary>
    public void Failure()
    {
        DegradationLevel? to = null;
        lock (_lock)
        {
            _successes = 0;
            if (!_pinned && _adaptGamma && _level < DegradationLevel.VerifierDecoding)
            {
                to = _level + 1;
            }
        }

        if (to is { } level)
        {
            Move(level);
        }
    }

    /// <summary>The link is down: the lossy rung.</summary>
    public void LinkDown()
    {
        lock (_lock)
        {
            if (_level == DegradationLevel.Offline)
            {
                return;
            }

            _beforeOffline = _level;
        }

        Move(DegradationLevel.Offline);
    }

    /// <summary>The link is back: return to the rung held before it went down.</summary>
    public void LinkUp()
    {
        DegradationLevel to;
        lock (_lock)
        {
            if (_level != DegradationLevel.Offline)
            {
                return;
            }

            to = _beforeOffline;
        }

        Move(to);
    }

    /// <summary>Time spent at each level so far, the current stretch included.</summary>
    public IReadOnlyDictionary<DegradationLevel, TimeSpan> TimeAtLevel()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var result = new Dictionary<DegradationLevel, TimeSpan>();
            foreach (var level in Enum.GetValues<DegradationLevel>())
            {
                var ticks = _ticks.GetValueOrDefault(level) + (level == _level ? now - _since : 0);
                result[level] = TimeSpan.FromSeconds((double)ticks / _time.TimestampFrequency);
            }

            return result;
        }
    }

    private void Move(DegradationLevel to)
    {
        DegradationLevel from;
        lock (_lock)
        {
            from = _level;
            if (from == to)
            {
                return;
            }

            var now = _time.GetTimestamp();
            _ticks[from] = _ticks.GetValueOrDefault(from) + (now - _since);
            _since = now;
            _level = to;
            _successes = 0;
        }

        Interlocked.Increment(ref _transitions);
        Changed?.Invoke(from, to);
    }

    /// <summary>Lower-case name as shown in outputs and status.</summary>
    public static string Name(DegradationLevel level) => level switch
    {
        DegradationLevel.Normal => "normal",
        DegradationLevel.ReducedGamma => "reduced-gamma",
        DegradationLevel.GammaOne => "gamma-1",
        DegradationLevel.VerifierDecoding => "verifier-decoding",
        DegradationLevel.Offline => "offline-unverified",
        _ => level.ToString(),
    };
}

namespace IotDsd.Edge.Hosting;

/// <summary>
/// Live figures of one draft worker for field diagnostics: recent acceptance, tokens per second and round trip
/// (exponentially weighted over rounds), γ, errors by reason, and the degradation level. Thread-safe.
/// </summary>
public sealed class EdgeMetrics
{
    private const double Weight = 0.1;
    private readonly object _gate = new();
    private readonly Dictionary<string, long> _errors = new(StringComparer.Ordinal);
    private long _lastDrafted;
    private long _lastAccepted;
    private double? _acceptance;
    private double? _tokensPerSecond;
    private double? _rttMs;
    private int? _gamma;
    private long _rounds;
    private long _tokens;
    private long _generations;
    private string _degradation = "normal";

    /// <summary>Rung of the degradation ladder; <c>normal</c> unless the link forced a lower one.</summary>
    public string Degradation
    {
        get { lock (_gate) { return _degradation; } }
        set { lock (_gate) { _degradation = value; } }
    }

    /// <summary>Generations waiting or running (the device's queue depth).</summary>
    public int QueueDepth { get; set; }

    /// <summary>A session started: its drafted and accepted totals begin at zero.</summary>
    public void SessionStarted()
    {
        lock (_gate)
        {
            _lastDrafted = 0;
            _lastAccepted = 0;
        }
    }

    /// <summary>A generation ended (counted by the service that runs them).</summary>
    public void GenerationCompleted()
    {
        lock (_gate)
        {
            _generations++;
        }
    }

    /// <summary>One round committed <paramref name="committed"/> tokens; the session's drafted and accepted totals so far.</summary>
    public void Round(long sessionDrafted, long sessionAccepted, int committed, double roundMs, double draftMs, double verifyMs, int gamma)
    {
        lock (_gate)
        {
            var drafted = sessionDrafted - _lastDrafted;
            var accepted = sessionAccepted - _lastAccepted;
            _lastDrafted = sessionDrafted;
            _lastAccepted = sessionAccepted;
            if (drafted > 0)
            {
                _acceptance = Ewma(_acceptance, (double)accepted / drafted);
            }

            if (roundMs > 0)
            {
                _tokensPerSecond = Ewma(_tokensPerSecond, committed * 1000.0 / roundMs);
            }

            _rttMs = Ewma(_rttMs, Math.Max(0, roundMs - draftMs - verifyMs));
            _gamma = gamma;
            _rounds++;
            _tokens += committed;
        }
    }

    /// <summary>Counts an error by reason (a short snake_case word, e.g. <c>timeout</c>).</summary>
    public void Error(string reason)
    {
        lock (_gate)
        {
            _errors[reason] = _errors.GetValueOrDefault(reason) + 1;
        }
    }

    public MetricsSnapshot Snapshot()
    {
        lock (_gate)
        {
            return new MetricsSnapshot(_acceptance, _tokensPerSecond, _rttMs, _gamma, _rounds, _tokens, _generations,
                _degradation, new Dictionary<string, long>(_errors, StringComparer.Ordinal));
        }
    }

    private static double Ewma(double? previous, double sample) => previous is { } p ? p + (Weight * (sample - p)) : sample;
}

/// <summary>A consistent copy of <see cref="EdgeMetrics"/>.</summary>
public sealed record MetricsSnapshot(
    double? Acceptance, double? TokensPerSecond, double? RttMs, int? Gamma, long Rounds, long Tokens, long Generations,
    string Degradation, IReadOnlyDictionary<string, long> Errors);

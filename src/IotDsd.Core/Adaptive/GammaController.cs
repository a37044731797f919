namespace IotDsd.Core.Adaptive;

/// <summary>
/// Chooses the draft length γ of each round for goodput — expected committed tokens per second (docs/protocol.md §6):
/// <c>E[N](γ) / (γ·t_draft + t_link + t_verify(γ))</c> with <c>E[N](γ) = (1 − α^{γ+1}) / (1 − α)</c>. Its inputs are
/// running estimates from the rounds it observes: the acceptance rate α (accepted drafts over acceptance trials), the
/// draft time per token, the verifier's time for a round as a line in γ (its batch time, which grows with the
/// verifier's load), and the rest of the round trip (network, broker and queueing at the verifier). So a loaded
/// verifier — longer batches, deeper queue — moves every device toward the γ that costs it least per token.
/// Where the caller can model the time a round of γ spends being serialised onto the link (the simulator, whose
/// link it defines), that part is given as a function and kept out of the learned round trip, so a narrow link that
/// makes long rounds expensive moves γ down. No I/O and no clock: the caller measures.
/// </summary>
public sealed class GammaController
{
    private readonly int _maxGamma;
    private readonly double _decay;
    private readonly Func<int, double, double>? _transferMs;
    private double _accepted;
    private double _trials;
    private double _draftMsPerToken;
    private double _linkMs;
    private double _sw, _sx, _sy, _sxx, _sxy; // decayed least-squares sums of (γ + 1, verify ms)
    private int _observed;

    /// <param name="maxGamma">The largest γ it may choose.</param>
    /// <param name="initialGamma">What <see cref="Choose"/> returns before the first observation.</param>
    /// <param name="halfLife">Rounds after which an observation weighs half.</param>
    /// <param name="transferMs">Optional: expected serialisation time of a round of γ drafts at acceptance rate α, ms
    /// (γ, α → ms). Without it, transfer time is part of the learned round trip and taken as the same for every γ.</param>
    public GammaController(int maxGamma, int initialGamma, double halfLife = 32, Func<int, double, double>? transferMs = null)
    {
        if (maxGamma < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxGamma), maxGamma, "max gamma must be at least 1");
        }

        if (halfLife <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(halfLife), halfLife, "half-life must be positive");
        }

        _maxGamma = maxGamma;
        InitialGamma = Math.Clamp(initialGamma, 1, maxGamma);
        _decay = Math.Pow(0.5, 1.0 / halfLife);
        _transferMs = transferMs;
    }

    public int InitialGamma { get; }

    /// <summary>Estimated per-token acceptance rate (0.5 before any observation).</summary>
    public double Alpha => (_accepted + 1) / (_trials + 2);

    /// <summary>Estimated draft time per token, ms.</summary>
    public double DraftMsPerToken => _draftMsPerToken;

    /// <summary>Estimated round time outside drafting, verification and modelled transfer (network, broker, queueing), ms.</summary>
    public double LinkMs => _linkMs;

    /// <summary>Rounds observed so far.</summary>
    public int Observed => _observed;

    /// <summary>Records one completed round.</summary>
    /// <param name="gamma">Drafts sent.</param>
    /// <param name="accepted">Drafts the verifier accepted (0..γ).</param>
    /// <param name="draftMs">Time the device spent drafting them.</param>
    /// <param name="roundMs">Whole round as the device saw it, drafting included.</param>
    /// <param name="verifyMs">The verifier's batch time for the round, as it reported.</param>
    public void Observe(int gamma, int accepted, double draftMs, double roundMs, double verifyMs)
    {
        if (gamma < 1 || accepted < 0 || accepted > gamma || !double.IsFinite(draftMs) || !double.IsFinite(roundMs) || !double.IsFinite(verifyMs))
        {
            return; // a malformed observation never moves the estimates
        }

        _accepted = (_accepted * _decay) + accepted;
        _trials = (_trials * _decay) + accepted + (accepted < gamma ? 1 : 0);
        var first = _observed == 0;
        _draftMsPerToken = Blend(_draftMsPerToken, Math.Max(0, draftMs) / gamma, first);
        _linkMs = Blend(_linkMs, Math.Max(0, roundMs - draftMs - verifyMs - TransferMs(gamma)), first);
        double x = gamma + 1, y = Math.Max(0, verifyMs);
        _sw = (_sw * _decay) + 1;
        _sx = (_sx * _decay) + x;
        _sy = (_sy * _decay) + y;
        _sxx = (_sxx * _decay) + (x * x);
        _sxy = (_sxy * _decay) + (x * y);
        _observed++;
    }

    /// <summary>Verifier time for a round of <paramref name="gamma"/> drafts: the fitted line, never below zero.</summary>
    public double VerifyMs(int gamma)
    {
        if (_sw <= 0)
        {
            return 0;
        }

        var mean = _sy / _sw;
        var varX = (_sxx / _sw) - Math.Pow(_sx / _sw, 2);
        if (varX < 1e-9)
        {
            // One γ seen so far: assume the time is flat in γ (a GPU batch) rather than extrapolate a slope.
            return mean;
        }

        var slope = Math.Max(0, ((_sxy / _sw) - (_sx / _sw * mean)) / varX);
        var intercept = mean - (slope * _sx / _sw);
        return Math.Max(0, intercept + (slope * (gamma + 1)));
    }

    /// <summary>Expected committed tokens per round at acceptance <paramref name="alpha"/>.</summary>
    public static double ExpectedTokens(double alpha, int gamma) =>
        alpha >= 1 ? gamma + 1 : (1 - Math.Pow(alpha, gamma + 1)) / (1 - alpha);

    /// <summary>Expected committed tokens per millisecond at <paramref name="gamma"/>.</summary>
    public double Goodput(int gamma)
    {
        var cost = (gamma * _draftMsPerToken) + _linkMs + VerifyMs(gamma) + TransferMs(gamma);
        return ExpectedTokens(Alpha, gamma) / Math.Max(cost, 1e-6);
    }

    /// <summary>The γ with the highest expected goodput; <see cref="InitialGamma"/> until rounds are observed.</summary>
    public int Choose(int? cap = null)
    {
        var max = Math.Clamp(cap ?? _maxGamma, 1, _maxGamma);
        if (_observed == 0)
        {
            return Math.Min(InitialGamma, max);
        }

        var best = 1;
        var bestRate = double.NegativeInfinity;
        for (var g = 1; g <= max; g++)
        {
            var rate = Goodput(g);
            if (rate > bestRate * (1 + 1e-9))
            {
                best = g;
                bestRate = rate;
            }
        }

        return best;
    }

    private double TransferMs(int gamma) => _transferMs is null ? 0 : Math.Max(0, _transferMs(gamma, Alpha));

    private double Blend(double current, double sample, bool first) => first ? sample : (current * _decay) + (sample * (1 - _decay));
}

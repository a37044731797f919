namespace IotDsd.Core.Adaptive;

/// <summary>What a shape controller may choose: the deepest round, the widest node, the largest tree, how far ahead.</summary>
/// <param name="MaxDepth">Draft levels at most (the session's γ).</param>
/// <param name="MaxWidth">Children per tree node at most; 1 = chains only.</param>
/// <param name="MaxNodes">Draft nodes per round at most (the verifier's tree budget); at most <paramref name="MaxDepth"/> means chains only.</param>
/// <param name="MaxPipeline">Rounds sent ahead of a pending verdict at most (0 or 1).</param>
/// <param name="AheadOutcomes">Outcomes of the pending round a chain sent ahead is drafted for (one round each): 1
/// "all accepted"; n also "k accepted, then the draft's second choice" for k &lt; n − 1; 0 one per k. Trees are not sent ahead.</param>
public readonly record struct ShapeLimits(int MaxDepth, int MaxWidth = 1, int MaxNodes = 0, int MaxPipeline = 0, int AheadOutcomes = 1)
{
    /// <summary>Chains of at most <paramref name="maxDepth"/>, one round in flight.</summary>
    public static ShapeLimits Chains(int maxDepth) => new(maxDepth);

    /// <summary>The node budget in force: at least the depth.</summary>
    public int Nodes => Math.Max(MaxNodes, MaxDepth);
}

/// <summary>
/// Chooses each round's shape — chain length, tree width and node budget, and whether to send the next round ahead of
/// the pending verdict — for the most committed tokens per second (docs/protocol.md §6). Per candidate shape it
/// predicts the tokens a round commits, 1 + the expected accepted drafts (<see cref="AcceptanceModel"/>: per-depth
/// rank statistics, or the chain outcome), and the time it takes: drafting (a line in nodes: a fixed part per round and
/// a part per node), the round trip outside
/// the verifier (the median of the last rounds' send-to-verdict time less the verifier's time and any modelled
/// transfer), the modelled transfer (optional: the simulator knows its link), and the verifier's batch time (a line in
/// batch × (nodes + 1), with the batch as recently seen — so a loaded verifier makes large rounds dear for everyone).
/// A round sent ahead (pipeline 1) is verified when the pending round's whole chain and its bonus token come true (the
/// main chain's hit chance); then two rounds share one round trip (each costs half the sequential time, or the slower
/// of drafting and verifying where that is more); otherwise it was wasted uplink (its transfer) and a short reply, and the next round costs a full
/// round trip. The menu: every depth up to the cap; widths 2 .. <see cref="ShapeLimits.MaxWidth"/> at node budgets of
/// 1.5, 2, 3 and 4 × the depth; each sequential or pipelined: a few hundred candidates, evaluated from one best-first
/// pass per (width, depth), tens of microseconds. A new shape must beat the current one by 3 % to replace it; every
/// <see cref="ProbeEvery"/> rounds one round tries a neighbouring depth, so that the cost lines see more than one size
/// (the first round, which pays the warm-up, teaches no costs). No I/O and no clock: the caller measures.
/// </summary>
public sealed class ShapeController : IRoundShaper
{
    /// <summary>How much better (relative goodput) a candidate must be to replace the current shape.</summary>
    public const double Hysteresis = 0.03;

    /// <summary>Every this many rounds the controller tries a neighbour of its shape (a quarter deeper or shallower, in
    /// turn), so that its cost lines see more than one size: one size alone cannot tell a per-node cost from a fixed one.</summary>
    public const int ProbeEvery = 16;

    private static readonly double[] NodeFactors = [1.5, 2, 3, 4];

    private readonly ShapeLimits _limits;
    private readonly Func<RoundShape, double, double>? _transferMs;
    private readonly AcceptanceModel _acceptance;
    private readonly DecayedLine _draft;
    private readonly DecayedLine _verify;
    private readonly RecentMedian _link = new();
    private readonly double _decay;
    private double _batch;
    private double _missMs;
    private RoundShape _current;
    private int _observed;
    private long _nexts;

    /// <param name="limits">What it may choose.</param>
    /// <param name="initial">The shape before the first observation (capped by the limits).</param>
    /// <param name="halfLife">Rounds after which an acceptance or cost observation weighs half.</param>
    /// <param name="transferMs">Optional: expected serialisation time of a round of the given shape at top-token
    /// acceptance α (shape, α → ms), kept out of the learned round trip. Without it, transfer is part of the round trip
    /// and taken as the same for every shape.</param>
    public ShapeController(ShapeLimits limits, RoundShape? initial = null, double halfLife = 32, Func<RoundShape, double, double>? transferMs = null)
    {
        if (limits.MaxDepth < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(limits), limits.MaxDepth, "max depth must be at least 1");
        }

        if (limits.MaxWidth < 1 || limits.MaxPipeline < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(limits), limits, "max width must be at least 1 and max pipeline at least 0");
        }

        if (!(halfLife > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(halfLife), halfLife, "half-life must be positive");
        }

        _limits = limits with { MaxWidth = Math.Min(limits.MaxWidth, AcceptanceModel.MaxRank - 1), MaxPipeline = Math.Min(limits.MaxPipeline, 1) };
        _decay = Math.Pow(0.5, 1.0 / halfLife);
        _acceptance = new AcceptanceModel(halfLife);
        _draft = new DecayedLine(_decay);
        _verify = new DecayedLine(_decay);
        _transferMs = transferMs;
        Initial = Limit(initial ?? RoundShape.Chain(limits.MaxDepth), limits.MaxDepth);
        _current = Initial;
    }

    /// <summary>A chain controller: depth up to <paramref name="maxDepth"/>, starting at <paramref name="initialDepth"/>.</summary>
    public static ShapeController ForChains(int maxDepth, int initialDepth, double halfLife = 32, Func<RoundShape, double, double>? transferMs = null) =>
        new(ShapeLimits.Chains(maxDepth), RoundShape.Chain(Math.Clamp(initialDepth, 1, Math.Max(1, maxDepth))), halfLife, transferMs);

    public ShapeLimits Limits => _limits;

    /// <summary>What <see cref="Next"/> returns before the first observation.</summary>
    public RoundShape Initial { get; }

    /// <summary>The acceptance it has learned.</summary>
    public AcceptanceModel Acceptance => _acceptance;

    /// <summary>Estimated draft time of a round of <paramref name="nodes"/>, ms.</summary>
    public double DraftMs(int nodes) => _draft.At(nodes);

    /// <summary>Estimated round trip outside drafting, verification and modelled transfer (network, broker, queueing), ms.</summary>
    public double LinkMs => _link.Value;

    /// <summary>Mean batch of the verifier's passes lately (1 before any observation).</summary>
    public double Batch => Math.Max(1, _batch);

    /// <summary>Rounds observed so far.</summary>
    public int Observed => _observed;

    /// <summary>Verifier time of a round of <paramref name="nodes"/> in a batch of <paramref name="batch"/>: the fitted line in batch × (nodes + 1).</summary>
    public double VerifyMs(int nodes, double batch) => _verify.At(Math.Max(1, batch) * (nodes + 1));

    /// <inheritdoc />
    public void Observe(in RoundObservation o)
    {
        var nodes = Math.Max(o.Drafted, o.Shape.Depth);
        if (nodes < 1 || o.Accepted < 0 || o.Accepted > nodes || !double.IsFinite(o.DraftMs) || !double.IsFinite(o.VerifyMs) || !double.IsFinite(o.RoundTripMs))
        {
            return; // a malformed observation never moves the estimates
        }

        _observed++;
        if (_observed == 1 && !o.Pipelined)
        {
            // The first round of a generation pays the warm-up (first model calls, session open): it teaches acceptance
            // and the round trip but not the per-node costs.
            _acceptance.Observe(o);
            _batch = Math.Max(1, o.BatchSize);
            _link.Add(Math.Max(0, o.RoundTripMs - o.VerifyMs - Transfer(o.Shape)));
            return;
        }

        _draft.Add(nodes, Math.Max(0, o.DraftMs));
        if (o.Pipelined && !o.ConditionHeld)
        {
            // Sent ahead on a prediction that failed: nothing was verified; the verifier's answer is its whole cost.
            _missMs = (_missMs * _decay) + (Math.Max(0, o.VerifyMs) * (1 - _decay));
            return;
        }

        _acceptance.Observe(o);
        _batch = _batch <= 0 ? Math.Max(1, o.BatchSize) : (_batch * _decay) + (Math.Max(1, o.BatchSize) * (1 - _decay));
        _verify.Add(Math.Max(1, o.BatchSize) * (nodes + 1), Math.Max(0, o.VerifyMs));
        if (!o.Pipelined)
        {
            // A round sent ahead waited for its predecessor too: only sequential rounds measure the link.
            _link.Add(Math.Max(0, o.RoundTripMs - o.VerifyMs - Transfer(o.Shape)));
        }
    }

    /// <inheritdoc />
    public RoundShape Next(int maxDepth)
    {
        var cap = Math.Min(maxDepth, _limits.MaxDepth);
        if (cap < 1)
        {
            return RoundShape.Chain(Math.Max(0, cap));
        }

        if (_observed == 0)
        {
            return Limit(Initial, cap);
        }

        var preferred = Preferred(cap);
        return ++_nexts % ProbeEvery == 0 && Probe(preferred, cap) is { } probe ? probe : preferred;
    }

    /// <summary>The shape it prefers now, no deeper than <paramref name="maxDepth"/>: <see cref="Next"/> without its probes.</summary>
    public RoundShape Preferred(int maxDepth)
    {
        var cap = Math.Min(maxDepth, _limits.MaxDepth);
        if (cap < 1)
        {
            return RoundShape.Chain(Math.Max(0, cap));
        }

        if (_observed == 0)
        {
            return Limit(Initial, cap);
        }

        var current = Limit(_current, cap);

        var best = current;
        var bestRate = Goodput(current) * (1 + Hysteresis);
        var budget = Math.Min(_limits.Nodes, 4 * cap);
        Span<double> accepted = stackalloc double[Math.Max(budget, 1)];
        for (var depth = 1; depth <= cap; depth++)
        {
            Consider(RoundShape.Chain(depth), _acceptance.ChainAccepted(depth), ref best, ref bestRate);
            for (var width = 2; width <= _limits.MaxWidth && budget > depth; width++)
            {
                var most = _acceptance.TreeAccepted(width, depth, accepted[..Math.Min(budget, (int)Math.Ceiling(NodeFactors[^1] * depth))]);
                var lastNodes = depth;
                foreach (var factor in NodeFactors)
                {
                    var nodes = Math.Min(Math.Min((int)Math.Ceiling(factor * depth), budget), most);
                    if (nodes > lastNodes)
                    {
                        Consider(new RoundShape(depth, width, nodes, 0), accepted[nodes - 1], ref best, ref bestRate);
                        lastNodes = nodes;
                    }
                }
            }
        }

        _current = best;
        return best;
    }

    /// <summary>Expected committed tokens per millisecond of <paramref name="shape"/>, as the model stands.</summary>
    public double Goodput(RoundShape shape)
    {
        var accepted = shape.IsTree ? TreeAccepted(shape) : _acceptance.ChainAccepted(shape.Depth);
        return Goodput(shape, accepted);
    }

    /// <summary>Expected accepted drafts of <paramref name="shape"/> (chain or best-first tree).</summary>
    public double ExpectedAccepted(RoundShape shape) => shape.IsTree ? TreeAccepted(shape) : _acceptance.ChainAccepted(shape.Depth);

    private double TreeAccepted(RoundShape shape)
    {
        Span<double> accepted = stackalloc double[Math.Max(shape.Nodes, 1)];
        _acceptance.TreeAccepted(shape.Width, shape.Depth, accepted);
        return accepted[^1];
    }

    private void Consider(RoundShape shape, double accepted, ref RoundShape best, ref double bestRate)
    {
        for (var pipeline = 0; pipeline <= _limits.MaxPipeline; pipeline++)
        {
            if (pipeline > 0 && shape.IsTree)
            {
                break; // the device sends only chains ahead
            }

            var candidate = shape with { Pipeline = pipeline };
            var rate = Goodput(candidate, accepted);
            if (rate > bestRate * (1 + 1e-9))
            {
                best = candidate;
                bestRate = rate;
            }
        }
    }

    private double Goodput(RoundShape shape, double accepted)
    {
        if (shape.Depth < 1)
        {
            return 0;
        }

        var nodes = Math.Max(shape.Nodes, shape.Depth);
        var draft = DraftMs(nodes);
        var verify = VerifyMs(nodes, Batch);
        var transfer = Transfer(shape);
        var sequential = draft + LinkMs + transfer + verify;
        var time = sequential;
        if (shape.Pipeline > 0)
        {
            var outcomes = _limits.AheadOutcomes <= 0 ? shape.Depth + 1 : _limits.AheadOutcomes;
            var hit = _acceptance.ChainHit(shape.Depth, outcomes);
            // With one round ahead, two rounds share each round trip; the slowest stage bounds it below, and every
            // predicted outcome's round is drafted and goes up.
            var ahead = Math.Max(Math.Max(sequential / (1 + shape.Pipeline), Math.Max(draft * outcomes, verify)), transfer * outcomes);
            time = (hit * ahead) + ((1 - hit) * (sequential + transfer + _missMs));
        }

        return (1 + accepted) / Math.Max(time, 1e-6);
    }

    private RoundShape? Probe(RoundShape current, int cap)
    {
        var step = Math.Max(1, current.Depth / 4);
        var depth = (_nexts / ProbeEvery) % 2 == 0 ? current.Depth + step : current.Depth - step;
        depth = depth > cap ? current.Depth - step : depth < 1 ? current.Depth + step : depth;
        if (depth < 1 || depth > cap || depth == current.Depth)
        {
            return null;
        }

        var nodes = current.IsTree ? Math.Max(depth + 1, (int)Math.Round((double)current.Nodes * depth / current.Depth)) : depth;
        return Limit(current with { Depth = depth, Nodes = nodes }, cap);
    }

    private double Transfer(RoundShape shape) => _transferMs is null || shape.Depth < 1 ? 0 : Math.Max(0, _transferMs(shape, _acceptance.Top(1)));

    private RoundShape Limit(RoundShape shape, int cap)
    {
        var capped = shape.Capped(Math.Min(cap, _limits.MaxDepth));
        var width = Math.Clamp(capped.Width, 1, _limits.MaxWidth);
        var nodes = width == 1 ? capped.Depth : Math.Clamp(capped.Nodes, capped.Depth, _limits.Nodes);
        return capped with { Width = width, Nodes = nodes, Pipeline = Math.Clamp(capped.Pipeline, 0, _limits.MaxPipeline) };
    }
}

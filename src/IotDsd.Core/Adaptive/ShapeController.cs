namespace IotDsd.Core.Adaptive;

/// <summary>What a shape controller may choose: the deepest round, the widest node, the largest tree, how far ahead.</summary>
/// <param name="MaxDepth">Draft levels at most (the session's γ).</param>
/// <param name="MaxWidth">Children per tree node at most; 1 = chains only.</param>
/// <param name="MaxNodes">Draft nodes per round at most (the verifier's tree budget); at most <paramref name="MaxDepth"/> means chains only.</param>
/// <param name="MaxPipeline">Rounds sent ahead of a pending verdict at most (0 or 1).</param>
/// <param name="AheadOutcomes">Outcomes of the pending round a chain sent ahead is drafted for (one round each): 1
/// "all accepted"; n also "k accepted, then the draft's second choice" for k &lt; n − 1; 0 one per k. Trees are not sent ahead.</param>
/// <param name="StreamTokens">Tokens a streamed round asks the verifier to decode (depth 0: no drafts, the verifier
/// decodes and streams them down); 0 never streams. Streaming is on the menu only while the verifier's passes are
/// shared (<see cref="ShapeController.SharedBatch"/>): it is the fallback for a loaded verifier on which speculation
/// costs more than it saves.</param>
public readonly record struct ShapeLimits(int MaxDepth, int MaxWidth = 1, int MaxNodes = 0, int MaxPipeline = 0, int AheadOutcomes = 1, int StreamTokens = 0)
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
/// the pass's tokens, fitted to the tokens each pass really fed where the verifier reports them, and predicted at
/// batch × (nodes + 1) with the batch as recently seen — as if every session sent a round like this one — so a loaded
/// verifier makes large rounds dear for everyone).
/// A round sent ahead (pipeline 1) is verified when the pending round's whole chain and its bonus token come true (the
/// main chain's hit chance); then two rounds share one round trip (each costs half the sequential time, or the slower
/// of drafting and verifying where that is more); otherwise it was wasted uplink (its transfer) and a short reply, and the next round costs a full
/// round trip. The menu: every depth up to the cap; widths 2 .. <see cref="ShapeLimits.MaxWidth"/> at node budgets of
/// 1.5, 2, 3 and 4 × the depth; each sequential or pipelined: a few hundred candidates, evaluated from one best-first
/// pass per (width, depth), tens of microseconds. A new shape must beat the current one by 3 % to replace it; every
/// <see cref="ProbeEvery"/> rounds one round tries a neighbouring depth, so that the cost lines see more than one size
/// (the first round, which pays the warm-up, teaches no costs). With <see cref="ShapeLimits.StreamTokens"/> and a
/// shared verifier, depth 0 is on the menu too: a streamed round of K tokens costs one link round trip and K passes of
/// one token per session (the same line at batch × 1), and commits K — the server-only rate, which a chain must beat by
/// <see cref="SharedMargin"/> (docs/protocol.md §6). No I/O and no clock: the caller measures.
/// </summary>
public sealed class ShapeController : IRoundShaper
{
    /// <summary>How much better (relative goodput) a candidate must be to replace the current shape.</summary>
    public const double Hysteresis = 0.03;

    /// <summary>Every this many rounds the controller tries a neighbour of its shape (a quarter deeper or shallower, in
    /// turn), so that its cost lines see more than one size: one size alone cannot tell a per-node cost from a fixed one.</summary>
    public const int ProbeEvery = 16;

    /// <summary>The sessions sharing the verifier (<see cref="Batch"/>) from which a streamed round is on the menu: below
    /// it the device has the verifier to itself, and its drafts cost nobody else anything.</summary>
    public const double SharedBatch = 2;

    /// <summary>While streaming, after this many times <see cref="ShapeLimits.StreamTokens"/> streamed tokens one round
    /// drafts the best chain, so that acceptance stays known.</summary>
    public const int StreamProbeEvery = 8;

    private static readonly double[] NodeFactors = [1.5, 2, 3, 4];

    /// <summary>
    /// On a shared verifier, how much more goodput the model must predict for speculation than for streaming before it
    /// speculates. The model prices every session's round as if all sent the same, but not how rounds in flight thin
    /// the passes and lengthen the wait for the next; chosen with <c>iotdsd bench capacity</c> on a 2-core CPU
    /// (docs/protocol.md §6).
    /// </summary>
    public const double SharedMargin = 2;

    private readonly ShapeLimits _limits;
    private readonly Func<RoundShape, double, double>? _transferMs;
    private readonly AcceptanceModel _acceptance;
    private readonly DecayedLine _draft;
    private readonly DecayedLine _verify;
    private readonly RecentMedian _link = new();
    private readonly double _decay;
    private readonly RecentMedian _batch = new();
    private double _missMs;
    private RoundShape _current;
    private int _observed;
    private bool _streamSeen;
    private (double FixedMs, double PerTokenMs)? _passCost; // the verifier's own line, when it sends one
    private int _streamedSinceProbe;
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

    /// <summary>Chains only, none sent ahead: the menu on a local link, where there is no round trip to hide (depth 0
    /// stays on it where <see cref="ShapeLimits.StreamTokens"/> allows).</summary>
    public bool ChainsOnly { get; set; }

    /// <summary>True when a streamed round (depth 0) is on the menu now.</summary>
    public bool MayStream => _limits.StreamTokens > 0 && Batch >= SharedBatch;

    /// <summary>What <see cref="Next"/> returns before the first observation.</summary>
    public RoundShape Initial { get; }

    /// <summary>True once the verifier's load at open was given (<see cref="Prime"/>).</summary>
    public bool Primed { get; private set; }

    /// <summary>The acceptance it has learned.</summary>
    public AcceptanceModel Acceptance => _acceptance;

    /// <summary>Estimated draft time of a round of <paramref name="nodes"/>, ms.</summary>
    public double DraftMs(int nodes) => _draft.At(nodes);

    /// <summary>Estimated round trip outside drafting, verification and modelled transfer (network, broker, queueing), ms.</summary>
    public double LinkMs => _link.Value;

    /// <summary>The sessions sharing the verifier lately: the median over the last rounds of the pass's batch plus the
    /// requests waiting when it ended (1 before any observation). Sessions busy on a round trip are out of the pass they
    /// miss but still share the verifier; they come back as the queue.</summary>
    public double Batch => Math.Max(1, _batch.Value);

    /// <summary>Rounds observed so far.</summary>
    public int Observed => _observed;

    /// <summary>Verifier time of a round of <paramref name="nodes"/> in a batch of <paramref name="batch"/>, as if every
    /// session in it sent such a round: the verifier's own cost line at batch × (nodes + 1) tokens where it sends one
    /// (<see cref="PassCost"/>), else the line fitted to this device's rounds.</summary>
    public double VerifyMs(int nodes, double batch)
    {
        var tokens = Math.Max(1, batch) * (nodes + 1);
        return _passCost is var (fixedMs, perTokenMs) ? fixedMs + (perTokenMs * tokens) : _verify.At(tokens);
    }

    /// <summary>True once the verifier's pass time can be priced: the verifier sent its cost line, or rounds measured one.</summary>
    public bool PassCostKnown => _passCost is not null || !_verify.Empty;

    /// <inheritdoc />
    /// <remarks>
    /// The sessions and the cost line stand for the first round's batch and pass price. They can make the first round a
    /// streamed one, but only where the stream beats every chain even with all its drafts accepted: acceptance is
    /// unknown before a round, and a stream teaches none.
    /// </remarks>
    public void Prime(int sessions, double passFixedMs, double passPerTokenMs)
    {
        if (_observed > 0 || sessions < 1)
        {
            return;
        }

        TakeLine(passFixedMs, passPerTokenMs);
        _batch.Add(sessions);
        Primed = true;
    }

    /// <summary>Keeps the verifier's cost line where it sent one (both parts 0: it did not; not finite: ignored).</summary>
    private void TakeLine(double fixedMs, double perTokenMs)
    {
        if ((perTokenMs > 0 || fixedMs > 0) && double.IsFinite(fixedMs) && double.IsFinite(perTokenMs))
        {
            _passCost = (Math.Max(0, fixedMs), Math.Max(0, perTokenMs));
        }
    }

    /// <summary>The first round, before any observation: the initial shape, or a streamed round where a primed load
    /// makes it better than any chain could be (<see cref="Prime"/>).</summary>
    private RoundShape First(int cap)
    {
        if (!Primed || !MayStream || !PassCostKnown)
        {
            return Limit(Initial, cap);
        }

        var stream = Score(RoundShape.Chain(0), 0);
        for (var depth = 1; depth <= cap; depth++)
        {
            if (Goodput(RoundShape.Chain(depth), depth) >= stream)
            {
                return Limit(Initial, cap);
            }
        }

        return RoundShape.Chain(0);
    }

    /// <inheritdoc />
    public void Observe(in RoundObservation o)
    {
        TakeLine(o.PassFixedMs, o.PassPerTokenMs);

        if (o.Shape.Depth == 0 && o.Streamed > 0 && double.IsFinite(o.RoundTripMs))
        {
            // A streamed round: the verifier's batch. Its time says little of one pass (other sessions' prompts and
            // rounds share the passes, and chunks come several passes at a time); the verdicts of the rounds around it
            // measure the passes themselves.
            _observed++;
            _streamSeen = true;
            _streamedSinceProbe += o.Streamed;
            _batch.Add(Math.Max(1, o.BatchSize) + Math.Max(0, o.QueueDepth));
            return;
        }

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
            _batch.Add(Math.Max(1, o.BatchSize) + Math.Max(0, o.QueueDepth));
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
        _batch.Add(Math.Max(1, o.BatchSize) + Math.Max(0, o.QueueDepth));
        // The pass's cost in what it was made of: its tokens where the verifier says, else as if every session in it
        // sent a round like this one.
        _verify.Add(o.PassTokens > 0 ? o.PassTokens : Math.Max(1, o.BatchSize) * (nodes + 1), Math.Max(0, o.VerifyMs));
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
            return First(cap);
        }

        if (MayStream && !_streamSeen && _passCost is null)
        {
            // The verifier is shared, sends no cost line, and a streamed round has never been run: one shows what a
            // pass of one token per session costs, which the chains' rounds (all of about one size) cannot.
            _streamSeen = true;
            return RoundShape.Chain(0);
        }

        var preferred = Preferred(cap);
        ++_nexts;
        if (preferred.Depth == 0)
        {
            if (_streamedSinceProbe < StreamProbeEvery * _limits.StreamTokens)
            {
                return preferred;
            }

            _streamedSinceProbe = 0;
            return Preferred(cap, mayStream: false, remember: false); // the best chain, so that its acceptance stays known
        }

        return _nexts % ProbeEvery == 0 && Probe(preferred, cap) is { } probe ? probe : preferred;
    }

    /// <summary>The shape it prefers now, no deeper than <paramref name="maxDepth"/>: <see cref="Next"/> without its probes.</summary>
    public RoundShape Preferred(int maxDepth) => Preferred(maxDepth, MayStream, remember: true);

    private RoundShape Preferred(int maxDepth, bool mayStream, bool remember)
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
        if (current.Depth == 0 && !mayStream)
        {
            current = RoundShape.Chain(1); // the verifier is no longer shared: streaming is off the menu
        }
        else if (ChainsOnly && (current.IsTree || current.Pipeline > 0))
        {
            current = RoundShape.Chain(current.Depth);
        }

        var best = current;
        var bestRate = Score(current, current.Depth == 0 ? 0 : ExpectedAccepted(current)) * (1 + Hysteresis);
        var budget = Math.Min(_limits.Nodes, 4 * cap);
        var widest = ChainsOnly ? 1 : _limits.MaxWidth;
        Span<double> accepted = stackalloc double[Math.Max(budget, 1)];
        for (var depth = mayStream ? 0 : 1; depth <= cap; depth++)
        {
            Consider(RoundShape.Chain(depth), depth == 0 ? 0 : _acceptance.ChainAccepted(depth), ref best, ref bestRate);
            for (var width = 2; width <= widest && budget > depth; width++)
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

        if (remember)
        {
            _current = best;
        }

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

    /// <summary>What the menu compares: the goodput, a streamed round's weighted by <see cref="SharedMargin"/> (a chain
    /// must beat it by that much).</summary>
    private double Score(RoundShape shape, double accepted) => Goodput(shape, accepted) * (shape.Depth == 0 ? SharedMargin : 1);

    private void Consider(RoundShape shape, double accepted, ref RoundShape best, ref double bestRate)
    {
        for (var pipeline = 0; pipeline <= (ChainsOnly || shape.Depth == 0 ? 0 : _limits.MaxPipeline); pipeline++)
        {
            if (pipeline > 0 && shape.IsTree)
            {
                break; // the device sends only chains ahead
            }

            var candidate = shape with { Pipeline = pipeline };
            var rate = Score(candidate, accepted);
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
            // A streamed round: K tokens for one round trip and K passes of one token per session, every session in the
            // pass doing the same (never chosen before any pass has been measured: an empty cost line would make it look
            // free).
            var k = _limits.StreamTokens;
            return k > 0 && PassCostKnown ? k / Math.Max(LinkMs + (k * VerifyMs(0, Batch)), 1e-6) : 0;
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

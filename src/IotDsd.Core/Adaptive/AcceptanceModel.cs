namespace IotDsd.Core.Adaptive;

/// <summary>
/// What the shape controller knows of acceptance: for each depth d, the chance a<sub>d</sub>(0) that the committed token
/// is the draft's most likely one given the round reached depth d; and, pooled over depths, how the rank of the committed
/// token is spread when it is not (its share s(r) at rank r ≥ 1). So a<sub>d</sub>(r) = (1 − a<sub>d</sub>(0)) · s(r).
/// From greedy rank statistics (<see cref="RoundObservation.Ranks"/>) when rounds carry them; otherwise from the chain
/// outcome alone (accepted depths are rank 0, the first rejected one is "not rank 0"), which gives a<sub>d</sub>(0) and
/// no s: without ranks a tree can be worth no more than its main chain. Counts decay with a half-life in rounds; a
/// depth with few observations is shrunk toward the pooled rate. No I/O, no clock, deterministic.
/// </summary>
public sealed class AcceptanceModel
{
    /// <summary>Depths tracked apart; deeper ones share the last bucket.</summary>
    public const int Depths = 32;

    /// <summary>Ranks tracked apart (0 .. <see cref="MaxRank"/> − 1); the last bucket is "ranked lower or not at all".</summary>
    public const int MaxRank = 9;

    private const double Shrink = 2; // pseudo-observations of the pooled rate at each depth

    private readonly double _decay;
    private readonly double[] _reached = new double[Depths + 1];
    private readonly double[] _top = new double[Depths + 1];
    private readonly double[] _rank = new double[MaxRank + 1];
    private double _missed;
    private readonly double[] _topCache = new double[Depths + 1];
    private bool _dirty = true;

    /// <param name="halfLife">Rounds after which an observation weighs half.</param>
    public AcceptanceModel(double halfLife = 32)
    {
        if (!(halfLife > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(halfLife), halfLife, "half-life must be positive");
        }

        _decay = Math.Pow(0.5, 1.0 / halfLife);
    }

    /// <summary>True once some round carried the committed token's rank below the top (trees can be valued).</summary>
    public bool HasRanks => _missed > 1e-9 && _rank.Take(MaxRank).Sum() > 1e-9;

    /// <summary>Pooled chance that the draft's most likely token is committed (0.5 before any observation).</summary>
    public double PooledTop
    {
        get
        {
            double top = 0, reached = 0;
            for (var d = 1; d <= Depths; d++)
            {
                top += _top[d];
                reached += _reached[d];
            }

            return (top + 1) / (reached + 2);
        }
    }

    /// <summary>Learns from one verified round; a malformed one (accepted outside 0..depth) is ignored.</summary>
    public void Observe(in RoundObservation o)
    {
        var depth = Math.Max(o.Shape.Depth, 0);
        if (o.Accepted < 0 || o.Accepted > Math.Max(depth, o.Drafted))
        {
            return;
        }

        depth = Math.Max(depth, o.Accepted);
        var ranks = o.Ranks.Span;
        var ranked = false;
        foreach (var r in ranks)
        {
            ranked |= r >= 0;
        }

        Decay();
        _dirty = true;
        for (var d = 1; d <= o.Accepted + 1; d++)
        {
            var r = d <= ranks.Length ? ranks[d - 1] : -1;
            if (d > depth)
            {
                // The bonus position: only a rank says whether the draft would have predicted it.
                if (ranked && r >= 0)
                {
                    Count(d, r);
                }
            }
            else if (d <= o.Accepted)
            {
                Count(d, ranked && r >= 0 ? r : 0); // an accepted chain draft is the draft's top choice
            }
            else if (ranked)
            {
                Count(d, r >= 0 ? r : MaxRank); // rejected here: ranked lower, or not ranked at all
            }
            else
            {
                _reached[Bucket(d)] += 1; // rejected, rank unknown: not the top choice
            }
        }
    }

    /// <summary>a<sub>d</sub>(0): chance the draft's top token is committed at depth <paramref name="depth"/> (1-based).</summary>
    public double Top(int depth)
    {
        if (_dirty)
        {
            var pooled = PooledTop;
            for (var b = 1; b <= Depths; b++)
            {
                _topCache[b] = (_top[b] + (Shrink * pooled)) / (_reached[b] + Shrink);
            }

            _dirty = false;
        }

        return _topCache[Bucket(depth)];
    }

    /// <summary>s(r): of the committed tokens that were not the draft's top one, the share at rank <paramref name="rank"/> ≥ 1.</summary>
    public double Share(int rank) => rank is < 1 or >= MaxRank || _missed <= 1e-9 ? 0 : _rank[rank] / _missed;

    /// <summary>a<sub>d</sub>(r): chance the committed token at depth <paramref name="depth"/> is the draft's rank <paramref name="rank"/>.</summary>
    public double At(int depth, int rank) => rank == 0 ? Top(depth) : (1 - Top(depth)) * Share(rank);

    /// <summary>Chance that every draft of a chain of <paramref name="depth"/> is accepted and the bonus token is the
    /// draft's top one: the chance that a round sent ahead on the predicted outcome is verified.</summary>
    public double ChainHit(int depth, int outcomes)
    {
        // Predictions "k drafts accepted, then the draft's second choice" for k < outcomes − 1, and "all accepted, then
        // the draft's next token": disjoint outcomes, so their chances add.
        double hit = 0, reach = 1;
        var early = outcomes <= 0 ? depth : Math.Min(depth, outcomes - 1);
        for (var k = 0; k < early; k++)
        {
            hit += reach * At(k + 1, 1);
            reach *= Top(k + 1);
        }

        return hit + ChainHit(depth);
    }

    /// <summary>The chance that a round sent ahead on "every draft accepted, then the draft's next token" holds.</summary>
    public double ChainHit(int depth)
    {
        var p = 1.0;
        for (var d = 1; d <= depth + 1; d++)
        {
            p *= Top(d);
        }

        return p;
    }

    /// <summary>Expected accepted drafts of a chain of <paramref name="depth"/>: Σ<sub>d</sub> Π<sub>j≤d</sub> a<sub>j</sub>(0).</summary>
    public double ChainAccepted(int depth)
    {
        double sum = 0, path = 1;
        for (var d = 1; d <= depth; d++)
        {
            path *= Top(d);
            sum += path;
        }

        return sum;
    }

    /// <summary>
    /// Expected accepted drafts of a tree grown best-first with at most <paramref name="width"/> children per node and
    /// <paramref name="depth"/> levels, for each node budget: <c>into[n − 1]</c> for n nodes. The approximation: the
    /// committed token's rank at each depth is independent of the ranks above it, and the builder's order (draft path
    /// probability) is the order of a node's chance of lying on the accepted path, Π a<sub>d</sub>(r<sub>d</sub>) over
    /// the ranks on its path; the expected accepted length is then the sum of that chance over the tree's nodes, and
    /// best-first takes the n nodes with the largest. Returns the nodes such a tree can have (≤ <c>into.Length</c>).
    /// </summary>
    public int TreeAccepted(int width, int depth, Span<double> into)
    {
        width = Math.Clamp(width, 1, MaxRank - 1);
        if (depth < 1 || into.IsEmpty)
        {
            return 0;
        }

        // A binary max-heap of frontier nodes (value, depth); every popped node pushes its `width` children.
        var cap = (into.Length * width) + width;
        Span<double> values = cap <= 512 ? stackalloc double[cap] : new double[cap];
        Span<int> depths = cap <= 512 ? stackalloc int[cap] : new int[cap];
        var count = 0;
        for (var r = 0; r < width; r++)
        {
            Push(values, depths, ref count, At(1, r), 1);
        }

        double sum = 0;
        var n = 0;
        while (n < into.Length && count > 0)
        {
            var (value, d) = Pop(values, depths, ref count);
            if (value <= 0)
            {
                break;
            }

            sum += value;
            into[n++] = sum;
            if (d < depth)
            {
                for (var r = 0; r < width; r++)
                {
                    Push(values, depths, ref count, value * At(d + 1, r), d + 1);
                }
            }
        }

        for (var i = n; i < into.Length; i++)
        {
            into[i] = sum;
        }

        return n;
    }

    private void Count(int depth, int rank)
    {
        var b = Bucket(depth);
        _reached[b] += 1;
        if (rank == 0)
        {
            _top[b] += 1;
            return;
        }

        _missed += 1;
        _rank[Math.Min(rank, MaxRank)] += 1;
    }

    private void Decay()
    {
        for (var i = 0; i < _reached.Length; i++)
        {
            _reached[i] *= _decay;
            _top[i] *= _decay;
        }

        for (var i = 0; i < _rank.Length; i++)
        {
            _rank[i] *= _decay;
        }

        _missed *= _decay;
    }

    private static int Bucket(int depth) => Math.Clamp(depth, 1, Depths);

    private static void Push(Span<double> values, Span<int> depths, ref int count, double value, int depth)
    {
        var i = count++;
        while (i > 0)
        {
            var parent = (i - 1) / 2;
            if (values[parent] >= value)
            {
                break;
            }

            values[i] = values[parent];
            depths[i] = depths[parent];
            i = parent;
        }

        values[i] = value;
        depths[i] = depth;
    }

    private static (double Value, int Depth) Pop(Span<double> values, Span<int> depths, ref int count)
    {
        var top = (values[0], depths[0]);
        count--;
        double value = values[count];
        var depth = depths[count];
        var i = 0;
        while (true)
        {
            var child = (2 * i) + 1;
            if (child >= count)
            {
                break;
            }

            if (child + 1 < count && values[child + 1] > values[child])
            {
                child++;
            }

            if (values[child] <= value)
            {
                break;
            }

            values[i] = values[child];
            depths[i] = depths[child];
            i = child;
        }

        if (count > 0)
        {
            values[i] = value;
            depths[i] = depth;
        }

        return top;
    }
}

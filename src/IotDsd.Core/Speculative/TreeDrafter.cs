using IotDsd.Core.Models;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>A drafted token tree: nodes in topological order and what the device keeps of it.</summary>
public sealed class TreeDraft
{
    internal TreeDraft(int[] tokens, int[] parents, float[]? wireRows, Dictionary<int, int[]> rankRows)
    {
        Tokens = tokens;
        Parents = parents;
        WireRows = wireRows;
        RankRows = rankRows;
    }

    /// <summary>The draft nodes, parents before children.</summary>
    public int[] Tokens { get; }

    /// <summary>Parent of each node (an earlier node, or −1 for the root's children).</summary>
    public int[] Parents { get; }

    /// <summary>dsd: Q at each node with children, root first, then those nodes in ascending order (<see cref="TreeVerifier.Expanded"/>).</summary>
    public float[]? WireRows { get; }

    /// <summary>Greedy: the draft's <see cref="TreeDrafter.RankedTokens"/> best tokens, best first, at each node it ranked children at (−1 for the root).</summary>
    public IReadOnlyDictionary<int, int[]> RankRows { get; }

    /// <summary>
    /// Greedy: for each depth 1..path.Length + 1, the rank (0 = the draft's top token) of the committed token among the
    /// draft's logits at the node before it — <see cref="TreeDrafter.RankedTokens"/> for any rank from there on — or −1
    /// where the draft did not look (a leaf, or sampling).
    /// </summary>
    public int[] Ranks(ReadOnlySpan<int> path, ReadOnlySpan<int> committed) => RanksOf(RankRows, path, committed);

    /// <summary><see cref="Ranks"/> from the logits kept per node (−1: before the first node).</summary>
    public static int[] RanksOf(IReadOnlyDictionary<int, int[]> rankRows, ReadOnlySpan<int> path, ReadOnlySpan<int> committed)
    {
        ArgumentNullException.ThrowIfNull(rankRows);
        var ranks = new int[path.Length + 1];
        for (var d = 0; d <= path.Length; d++)
        {
            var at = d == 0 ? -1 : path[d - 1];
            ranks[d] = d < committed.Length && rankRows.TryGetValue(at, out var ranked) ? RankIn(ranked, committed[d]) : -1;
        }

        return ranks;
    }

    /// <summary>Position of <paramref name="token"/> in <paramref name="ranked"/> (best first), or its length when absent.</summary>
    private static int RankIn(int[] ranked, int token)
    {
        var i = Array.IndexOf(ranked, token);
        return i >= 0 ? i : ranked.Length;
    }
}

/// <summary>
/// Builds a budgeted token tree from the draft model (docs/protocol.md §14), best first by draft path probability: at
/// most <c>width</c> children per node, <c>depth</c> levels and <c>nodes</c> nodes. Greedy takes each node's top-ranked
/// tokens as its children; dsd gives every expanded node <c>width</c> children (fewer only where the node budget or the
/// row's support runs out, decided before drawing) drawn without replacement from its Q row, child j with the uniform
/// of (round, position, stream Draft, index (parent + 1)·2¹⁶ + j), as the verifier's recursive rejection sampling
/// assumes. Both first grow
/// a spine to the full depth — greedy the draft's argmax chain, dsd the first child of each spine node (chosen by its
/// index, never by its value) — so a tree holds at least what a chain of its depth would, and spend the rest of the
/// budget best first. A node's row is
/// computed only when the node is expanded (one draft feed of the tokens not already in the cache).
/// </summary>
public static class TreeDrafter
{
    /// <summary>Index of the uniform that draws child <paramref name="j"/> of <paramref name="parent"/> (−1: the root).</summary>
    public static long ChildIndex(int parent, int j) => ((long)(parent + 1) << 16) | (uint)j;

    /// <summary>Greedy: how many of the draft's best tokens are kept at each expanded node for ranks (a rank past them reads as this).</summary>
    public const int RankedTokens = 16;

    /// <param name="sequence">The draft's sequence, holding exactly the committed prefix of <paramref name="start"/> tokens; left there.</param>
    /// <param name="start">Committed length: the position of the root's children.</param>
    /// <param name="rootLogits">The draft's logits after the committed prefix.</param>
    /// <param name="depth">Most levels (≥ 1).</param>
    /// <param name="width">Most children per node (≥ 1).</param>
    /// <param name="nodes">Most nodes (≥ 1).</param>
    /// <param name="sampling">The session's sampling; greedy ranks by logits, otherwise children are sampled from Q.</param>
    /// <param name="random">The round's randomness.</param>
    public static TreeDraft Draft(
        IModelSequence sequence, int start, ReadOnlySpan<float> rootLogits, int depth, int width, int nodes, SamplingParams sampling, RoundRandom random)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        var vocab = rootLogits.Length;
        var greedy = sampling.IsGreedy;
        var tokens = new List<int>(nodes);
        var parents = new List<int>(nodes);
        var depths = new List<int>(nodes);
        var qRows = new Dictionary<int, float[]>();
        var rankRows = new Dictionary<int, int[]>();
        var cursor = new Cursor(sequence, start, rootLogits.ToArray(), tokens, parents);
        var queue = new PriorityQueue<Entry, (double, long)>();
        long order = 0;
        queue.Enqueue(new Entry(-1, -1, 0, Spine: true), (double.NegativeInfinity, order++));
        var logProbs = new double[vocab];
        while (queue.Count > 0 && tokens.Count < nodes)
        {
            var e = queue.Dequeue();
            if (e.Token >= 0)
            {
                // Greedy: a ranked child wins its place.
                Add(e.Node, e.Token, e.Score, e.Spine);
                continue;
            }

            var logits = cursor.LogitsAt(e.Node);
            var childDepth = e.Node < 0 ? 1 : depths[e.Node] + 1;
            if (greedy)
            {
                var ranked = TopTokens(logits, Math.Max(width, RankedTokens));
                rankRows[e.Node] = ranked;
                LogSoftmax(logits, logProbs);
                for (var r = 0; r < Math.Min(width, ranked.Length); r++)
                {
                    var t = ranked[r];
                    var spine = e.Spine && r == 0;
                    queue.Enqueue(new Entry(e.Node, t, e.Score + logProbs[t], spine), (spine ? double.NegativeInfinity : -(e.Score + logProbs[t]), order++));
                }

                continue;
            }

            var q = new float[vocab];
            Distribution.FromLogits(logits, sampling, q);
            qRows[e.Node] = q;

            // How many children is fixed before any is drawn: the width, the budget left and the row's support.
            var support = 0;
            foreach (var v in q)
            {
                if (v > 0f) support++;
            }

            var count = Math.Min(Math.Min(width, nodes - tokens.Count), support);
            var left = (float[])q.Clone();
            for (var j = 0; j < count; j++)
            {
                var t = Distribution.Sample(left, random.Uniform(RandomStream.Draft, start + childDepth - 1, ChildIndex(e.Node, j)));
                left[t] = 0f; // without replacement: the next sibling is drawn from Q without the earlier ones
                Add(e.Node, t, e.Score + Math.Log(q[t]), spine: e.Spine && j == 0);
            }
        }

        cursor.Reset();
        float[]? wire = null;
        if (!greedy)
        {
            var expanded = TreeVerifier.Expanded(parents.ToArray());
            wire = new float[expanded.Length * vocab];
            for (var i = 0; i < expanded.Length; i++)
            {
                qRows[expanded[i]].CopyTo(wire, i * vocab);
            }
        }

        return new TreeDraft([.. tokens], [.. parents], wire, rankRows);

        void Add(int parent, int token, double score, bool spine)
        {
            var node = tokens.Count;
            tokens.Add(token);
            parents.Add(parent);
            var d = parent < 0 ? 1 : depths[parent] + 1;
            depths.Add(d);
            if (d < depth)
            {
                queue.Enqueue(new Entry(node, -1, score, spine), (spine ? double.NegativeInfinity : -score, order++));
            }
        }
    }

    /// <summary>The <paramref name="k"/> largest logits' ids, highest first, ties to the lower id.</summary>
    public static int[] TopTokens(ReadOnlySpan<float> logits, int k)
    {
        k = Math.Min(k, logits.Length);
        var top = new int[k];
        var filled = 0;
        for (var t = 0; t < logits.Length; t++)
        {
            var v = logits[t];
            if (filled == k && !(v > logits[top[k - 1]])) continue;
            var i = filled < k ? filled++ : k - 1;
            while (i > 0 && v > logits[top[i - 1]])
            {
                top[i] = top[i - 1];
                i--;
            }

            top[i] = t;
        }

        return top;
    }

    private static void LogSoftmax(ReadOnlySpan<float> logits, double[] result)
    {
        var max = (double)logits[Distribution.ArgMax(logits)];
        double sum = 0;
        for (var t = 0; t < logits.Length; t++) sum += Math.Exp(logits[t] - max);
        var log = max + Math.Log(sum);
        for (var t = 0; t < logits.Length; t++) result[t] = logits[t] - log;
    }

    /// <summary>A node to expand (<see cref="Token"/> −1), or greedy: a ranked child of <see cref="Node"/> waiting for its place.</summary>
    /// <summary><see cref="Spine"/>: greedy, on the draft's own argmax chain, which the tree always holds to its full depth.</summary>
    private readonly record struct Entry(int Node, int Token, double Score, bool Spine = false);

    /// <summary>Moves the draft's cache to the path of a node, feeding only what it lacks.</summary>
    private sealed class Cursor(IModelSequence sequence, int start, float[] rootLogits, List<int> tokens, List<int> parents)
    {
        private readonly List<int> _held = []; // the nodes the cache holds after start, root first
        private float[] _logits = new float[rootLogits.Length];

        public ReadOnlySpan<float> LogitsAt(int node)
        {
            if (node < 0)
            {
                return rootLogits;
            }

            var path = TokenTree.PathTo(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(parents), node);
            var common = 0;
            while (common < _held.Count && common < path.Length && _held[common] == path[common]) common++;
            if (common == path.Length) common--; // the node is held already: feed it again for its row
            sequence.Truncate(start + common);
            var feed = new int[path.Length - common];
            for (var i = 0; i < feed.Length; i++) feed[i] = tokens[path[common + i]];
            sequence.Feed(feed, _logits);
            _held.Clear();
            _held.AddRange(path);
            return _logits;
        }

        public void Reset()
        {
            if (sequence.Length > start) sequence.Truncate(start);
            _held.Clear();
        }
    }
}

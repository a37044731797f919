using IotDsd.Core.Adaptive;

namespace IotDsd.Core.Tests;

/// <summary>
/// Synthetic greedy rounds for shape-controller tests: at every depth the committed token is the draft's top choice
/// with chance α, else at rank 1, 2, 3 with chances ½, ¼, ⅛ of the rest, else unranked (−1). A tree holds the nodes a
/// best-first builder takes by their true chance (built here independently of the controller's model). Seeded.
/// </summary>
internal static class SyntheticRanks
{
    private static readonly double[] MissShares = [0, 0.5, 0.25, 0.125];

    public static int Draw(Random random, double alpha)
    {
        if (random.NextDouble() < alpha)
        {
            return 0;
        }

        var u = random.NextDouble();
        for (var r = 1; r < MissShares.Length; r++)
        {
            if ((u -= MissShares[r]) < 0)
            {
                return r;
            }
        }

        return -1;
    }

    /// <summary>Every rank path of 1 .. <paramref name="depth"/> levels with ranks below <paramref name="width"/>.</summary>
    public static IEnumerable<int[]> Paths(int width, int depth)
    {
        var level = new List<int[]> { Array.Empty<int>() };
        for (var d = 1; d <= depth; d++)
        {
            level = [.. level.SelectMany(p => Enumerable.Range(0, width).Select(r => (int[])[.. p, r]))];
            foreach (var path in level)
            {
                yield return path;
            }
        }
    }

    /// <summary>Runs <paramref name="rounds"/> rounds of whatever the controller chooses, feeding back what they did.</summary>
    public static ShapeController Run(
        ShapeController controller, double alpha, double linkMs, int rounds, bool withRanks, List<RoundShape>? seen = null,
        Func<RoundShape, double, double>? transfer = null, int seed = 99)
    {
        var random = new Random(seed);
        var trees = new Dictionary<RoundShape, HashSet<string>>();
        var maxDepth = controller.Limits.MaxDepth;
        var predicted = false; // the previous round was sent ahead of and its prediction came true
        var wasted = false;
        for (var i = 0; i < rounds; i++)
        {
            var shape = controller.Next(maxDepth);
            seen?.Add(shape);
            var nodes = Math.Max(shape.Nodes, shape.Depth);
            var tree = trees.TryGetValue(shape with { Pipeline = 0 }, out var t) ? t : trees[shape with { Pipeline = 0 }] = Tree(alpha, shape);
            var ranks = new int[shape.Depth + 1];
            for (var d = 0; d <= shape.Depth; d++)
            {
                ranks[d] = Draw(random, alpha);
            }

            var accepted = 0;
            while (accepted < shape.Depth && ranks[accepted] >= 0 && tree.Contains(string.Join(',', ranks.Take(accepted + 1))))
            {
                accepted++;
            }

            var verify = 3 + (0.2 * (nodes + 1));
            var wire = transfer?.Invoke(shape, alpha) ?? 0;
            if (wasted)
            {
                controller.Observe(new RoundObservation(shape, nodes, 0, default, 0.5 * nodes, 0.1, linkMs + wire, 1, Pipelined: true, ConditionHeld: false));
            }

            var reported = withRanks ? ranks.Take(accepted + 1).ToArray() : [];
            controller.Observe(new RoundObservation(shape, nodes, accepted, reported, 0.5 * nodes, verify, linkMs + wire + verify, 1, Pipelined: predicted, ConditionHeld: predicted));
            var hit = accepted == shape.Depth && ranks[shape.Depth] == 0;
            predicted = shape.Pipeline > 0 && hit;
            wasted = shape.Pipeline > 0 && !hit;
        }

        return controller;
    }

    /// <summary>The best-first tree of <paramref name="shape"/> by true node chance, as comma-joined rank paths.</summary>
    private static HashSet<string> Tree(double alpha, RoundShape shape)
    {
        double Chance(int rank) => rank == 0 ? alpha : rank < MissShares.Length ? (1 - alpha) * MissShares[rank] : 0;
        var nodes = new HashSet<string>();
        var frontier = new PriorityQueue<int[], double>();
        var width = Math.Max(1, shape.Width);
        for (var r = 0; r < width; r++)
        {
            frontier.Enqueue([r], -Chance(r));
        }

        var budget = Math.Max(shape.Nodes, shape.Depth);
        while (nodes.Count < budget && frontier.TryDequeue(out var path, out var negative))
        {
            nodes.Add(string.Join(',', path));
            if (path.Length < shape.Depth)
            {
                for (var r = 0; r < width; r++)
                {
                    frontier.Enqueue([.. path, r], negative * Chance(r));
                }
            }
        }

        return nodes;
    }
}

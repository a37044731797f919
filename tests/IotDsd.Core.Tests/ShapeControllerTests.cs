using IotDsd.Core.Adaptive;
using Xunit;

namespace IotDsd.Core.Tests;

public sealed class ShapeControllerTests
{
    /// <summary>True goodput of a chain of γ at per-token acceptance α with the given costs (what a controller should maximise).</summary>
    private static double ChainGoodput(double alpha, int gamma, double draftMs, double linkMs, double verifyMs) =>
        ((1 - Math.Pow(alpha, gamma + 1)) / (1 - alpha)) / ((gamma * draftMs) + linkMs + verifyMs);

    /// <summary>Feeds chain rounds whose acceptance follows a fixed α (seeded), with the given costs; no ranks.</summary>
    private static ShapeController RunChains(
        double alpha, double draftMs, double linkMs, Func<int, double> verifyMs, int maxGamma = 12, int rounds = 2000, int batch = 1,
        Func<RoundShape, double, double>? transfer = null, ShapeController? controller = null, int seed = 1234)
    {
        var random = new Random(seed);
        controller ??= ShapeController.ForChains(maxGamma, 4);
        for (var i = 0; i < rounds; i++)
        {
            var shape = controller.Next(maxGamma);
            var accepted = 0;
            while (accepted < shape.Depth && random.NextDouble() < alpha)
            {
                accepted++;
            }

            var verify = verifyMs(shape.Depth);
            var wire = transfer?.Invoke(shape, alpha) ?? 0;
            controller.Observe(new RoundObservation(shape, shape.Depth, accepted, default, shape.Depth * draftMs, verify, linkMs + wire + verify, batch));
        }

        return controller;
    }

    [Theory]
    [InlineData(0.8, 0.5, 40.0)] // slow link, good drafts: long drafts
    [InlineData(0.8, 0.5, 0.2)]  // loopback: drafting dominates
    [InlineData(0.3, 0.5, 40.0)] // poor drafts
    [InlineData(0.6, 2.0, 5.0)]
    public void Next_StationaryChainCosts_ConvergesToGoodputOptimum(double alpha, double draftMs, double linkMs)
    {
        double Verify(int g) => 3 + (0.5 * (g + 1));
        var controller = RunChains(alpha, draftMs, linkMs, Verify);
        var best = Enumerable.Range(1, 12).MaxBy(g => ChainGoodput(alpha, g, draftMs, linkMs, Verify(g)));
        var chosen = controller.Preferred(12);
        Assert.False(chosen.IsTree);
        Assert.Equal(0, chosen.Pipeline);
        var loss = 1 - (ChainGoodput(alpha, chosen.Depth, draftMs, linkMs, Verify(chosen.Depth)) / ChainGoodput(alpha, best, draftMs, linkMs, Verify(best)));
        Assert.True(loss < 0.04, $"chose {chosen}, optimum γ={best}, goodput {loss:P1} below it");
        Assert.InRange(controller.Acceptance.PooledTop, alpha - 0.1, alpha + 0.1); // a 32-round half-life: about 46 rounds' worth
    }

    [Fact]
    public void Next_VerifierLoadGrows_ShortensChains()
    {
        // A verifier whose round time grows steeply with γ (a loaded CPU batch) makes long drafts expensive.
        var idle = RunChains(0.7, 0.3, 2, g => 1 + (0.1 * g)).Preferred(12).Depth;
        var loaded = RunChains(0.7, 0.3, 2, g => 5 + (8.0 * g)).Preferred(12).Depth;
        Assert.True(loaded < idle, $"loaded verifier chose γ={loaded}, idle {idle}");
    }

    [Fact]
    public void Next_LargerBatches_ShortenChains()
    {
        // The same per-token verifier cost, but each pass carries 16 sessions' rounds: every extra draft costs 16 times
        // as much verifier time, so the controller, told the batch, drafts less.
        static double Pass(int gamma, int batch) => 2 + (0.4 * batch * (gamma + 1));
        var alone = RunChains(0.75, 0.2, 4, g => Pass(g, 1), batch: 1).Preferred(12).Depth;
        var shared = RunChains(0.75, 0.2, 4, g => Pass(g, 16), batch: 16).Preferred(12).Depth;
        Assert.True(shared < alone, $"batch 16 chose γ={shared}, batch 1 {alone}");
    }

    [Fact]
    public void Next_NarrowLink_ShortensChains()
    {
        // Each draft adds 10 ms on the wire. Told so, the controller keeps it out of the learned round trip and
        // chooses the optimum of the whole cost; without it, it lumps the transfer into a flat link time.
        static double Transfer(RoundShape s, double alpha) => 10.0 * s.Nodes;
        var told = RunChains(0.8, 0.5, 20, _ => 5, transfer: Transfer, controller: new ShapeController(ShapeLimits.Chains(12), RoundShape.Chain(12), transferMs: Transfer));
        var blind = RunChains(0.8, 0.5, 20, _ => 5, transfer: Transfer, controller: ShapeController.ForChains(12, 12));
        var best = Enumerable.Range(1, 12).MaxBy(g => ChainGoodput(0.8, g, 0.5, 20 + (10.0 * g), 5));
        Assert.InRange(told.Preferred(12).Depth, best - 1, best + 1);
        Assert.Equal(20, told.LinkMs, 0);
        Assert.True(blind.Preferred(12).Depth > told.Preferred(12).Depth, $"blind {blind.Preferred(12)}, told {told.Preferred(12)}");
    }

    [Fact]
    public void Next_SlowFirstRoundThenPoorDrafts_StaysShort()
    {
        // The first round pays the warm-up (200 ms of drafting for 4 tokens); after it a draft costs 1 ms and is rarely
        // accepted. The warm-up must not read as "longer rounds draft faster" and pin the controller at its deepest.
        var controller = ShapeController.ForChains(16, 4);
        controller.Observe(new RoundObservation(RoundShape.Chain(4), 4, 0, default, 200, 2, 17, 1));
        RunChains(0.2, 1.0, 15, g => 2 + (0.05 * g), maxGamma: 16, rounds: 300, controller: controller);
        Assert.InRange(controller.Preferred(16).Depth, 1, 3);
    }

    [Fact]
    public void Next_EverySixteenthRound_ProbesANeighbourDepth()
    {
        var controller = RunChains(0.8, 0.5, 40, g => 3 + (0.5 * (g + 1)), rounds: 200);
        var preferred = controller.Preferred(12);
        var shapes = Enumerable.Range(0, 64).Select(_ => controller.Next(12)).ToList();
        Assert.Equal(60, shapes.Count(s => s == preferred));
        Assert.All(shapes.Where(s => s != preferred), s => Assert.InRange(Math.Abs(s.Depth - preferred.Depth), 1, Math.Max(1, preferred.Depth / 4)));
    }

    [Fact]
    public void Next_BeforeObservations_InitialShapeWithinCap()
    {
        var controller = ShapeController.ForChains(8, 6);
        Assert.Equal(RoundShape.Chain(6), controller.Next(8));
        Assert.Equal(RoundShape.Chain(3), controller.Next(3));
        Assert.Equal(0, controller.Next(0).Depth);
    }

    [Fact]
    public void Observe_MalformedRounds_Ignored()
    {
        var controller = ShapeController.ForChains(8, 4);
        controller.Observe(new RoundObservation(RoundShape.Chain(0), 0, 0, default, 1, 1, 1, 1));
        controller.Observe(new RoundObservation(RoundShape.Chain(4), 4, 5, default, 1, 1, 1, 1));
        controller.Observe(new RoundObservation(RoundShape.Chain(4), 4, 2, default, double.NaN, 1, 1, 1));
        Assert.Equal(0, controller.Observed);
        Assert.Equal(RoundShape.Chain(4), controller.Next(8));
    }

    [Fact]
    public void VerifyMs_LinearCosts_FitsLine()
    {
        var controller = ShapeController.ForChains(8, 4);
        for (var g = 1; g <= 8; g++)
        {
            controller.Observe(new RoundObservation(RoundShape.Chain(g), g, 0, default, 0, 10 + (2 * (g + 1)), 10 + (2 * (g + 1)), 1));
        }

        Assert.Equal(10 + (2 * 6), controller.VerifyMs(5, 1), 6);
    }

    [Fact]
    public void Constructor_BadArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShapeController(ShapeLimits.Chains(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShapeController(ShapeLimits.Chains(4), halfLife: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShapeController(new ShapeLimits(4, MaxWidth: 0)));
    }

    [Fact]
    public void TreeAccepted_SmallTrees_MatchesBruteForce()
    {
        // Learned rank statistics: top-1 0.6 at every depth, misses at rank 1 half the time, rank 2 a quarter, else lower.
        var model = new AcceptanceModel();
        var random = new Random(7);
        for (var i = 0; i < 4000; i++)
        {
            var ranks = Enumerable.Range(0, 4).Select(_ => SyntheticRanks.Draw(random, 0.6)).ToArray();
            var accepted = ranks.TakeWhile(r => r == 0).Count();
            model.Observe(new RoundObservation(RoundShape.Chain(3), 3, Math.Min(accepted, 3), ranks.Take(Math.Min(accepted, 3) + 1).ToArray(), 0, 0, 0, 1));
        }

        foreach (var (width, depth, nodes) in new[] { (2, 3, 5), (3, 2, 7), (2, 4, 9), (4, 3, 20) })
        {
            var brute = SyntheticRanks.Paths(width, depth)
                .Select(path => path.Select((r, d) => model.At(d + 1, r)).Aggregate(1.0, (a, b) => a * b))
                .OrderByDescending(v => v).Take(nodes).Sum();
            Assert.Equal(brute, SumTree(model, width, depth, nodes), 9);
        }

        Assert.Equal(model.ChainAccepted(3), SumTree(model, 1, 3, 3), 9);
    }

    private static double SumTree(AcceptanceModel model, int width, int depth, int nodes)
    {
        var sums = new double[nodes];
        model.TreeAccepted(width, depth, sums);
        return sums[^1];
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Next_RttHighThenLow_LongerAndWiderShapesAtHighRtt(bool ranks)
    {
        // Trees and pipelining allowed. A 1 ms link settles on a short shape; 160 ms makes every round trip dear, so the
        // controller carries more per round: deeper, and (when it knows the ranks) wider or sent ahead.
        var limits = new ShapeLimits(12, MaxWidth: 4, MaxNodes: 48, MaxPipeline: 1);
        var near = SyntheticRanks.Run(new ShapeController(limits, RoundShape.Chain(4)), 0.7, linkMs: 1, rounds: 600, withRanks: ranks).Preferred(12);
        var far = SyntheticRanks.Run(new ShapeController(limits, RoundShape.Chain(4)), 0.7, linkMs: 160, rounds: 600, withRanks: ranks).Preferred(12);
        Assert.True(far.Depth > near.Depth, $"160 ms: {far}; 1 ms: {near}");
        Assert.True(far.Nodes > near.Nodes, $"160 ms: {far}; 1 ms: {near}");
        if (ranks)
        {
            Assert.True(far.IsTree || far.Pipeline > 0, $"160 ms with ranks known: {far}");
        }
        else
        {
            Assert.False(far.IsTree, $"without ranks a tree is worth no more than its main chain: {far}");
        }
    }

    [Fact]
    public void Next_RttSteps_SettlesWithinFiveRounds()
    {
        // 5 ms one way (10 round trip) then 80 (160): the round-trip median crosses within four rounds of the step, and
        // the shape moves with it onto the flat top of the 160 ms goodput curve.
        var limits = ShapeLimits.Chains(16);
        var controller = new ShapeController(limits, RoundShape.Chain(4));
        SyntheticRanks.Run(controller, 0.8, linkMs: 10, rounds: 300, withRanks: true);
        var before = controller.Preferred(16);
        var far = SyntheticRanks.Run(new ShapeController(limits, RoundShape.Chain(4)), 0.8, linkMs: 160, rounds: 300, withRanks: true);
        var reference = far.Preferred(16);
        Assert.True(reference.Depth > before.Depth, $"160 ms settles on {reference}, 10 ms on {before}");
        var shapes = new List<RoundShape>();
        SyntheticRanks.Run(controller, 0.8, linkMs: 160, rounds: 5, withRanks: true, seen: shapes);
        // Settled: a shape whose goodput, judged by the controller that only ever saw 160 ms, is within the hysteresis band.
        bool Settled(RoundShape shape) => far.Goodput(shape) * (1 + ShapeController.Hysteresis) >= far.Goodput(reference);
        Assert.False(Settled(before), $"{before} is already as good at 160 ms as {reference}");
        var settled = shapes.FindIndex(Settled);
        Assert.True(settled is >= 0 and <= 4, $"before {before}, 160 ms optimum {reference}; after the step: {string.Join(", ", shapes)}");
        Assert.True(Settled(controller.Preferred(16)), $"{controller.Preferred(16)}");
    }

    [Fact]
    public void Next_SameObservations_SameShapes()
    {
        var limits = new ShapeLimits(10, MaxWidth: 3, MaxNodes: 30, MaxPipeline: 1);
        var a = new List<RoundShape>();
        var b = new List<RoundShape>();
        SyntheticRanks.Run(new ShapeController(limits), 0.65, linkMs: 40, rounds: 400, withRanks: true, seen: a);
        SyntheticRanks.Run(new ShapeController(limits), 0.65, linkMs: 40, rounds: 400, withRanks: true, seen: b);
        Assert.Equal(a, b);
        Assert.True(a.Distinct().Count() > 1, "the controller moved off its initial shape");
    }

    [Fact]
    public void Next_Always_BoundedByLimitsAndCap()
    {
        var limits = new ShapeLimits(6, MaxWidth: 3, MaxNodes: 14, MaxPipeline: 1);
        var controller = SyntheticRanks.Run(new ShapeController(limits), 0.9, linkMs: 300, rounds: 300, withRanks: true);
        for (var cap = 0; cap <= 10; cap++)
        {
            var shape = controller.Next(cap);
            Assert.InRange(shape.Depth, 0, Math.Min(cap, 6));
            Assert.InRange(shape.Width, 1, 3);
            Assert.InRange(shape.Nodes, shape.Depth, 14);
            Assert.InRange(shape.Pipeline, 0, 1);
        }

        Assert.Equal(6, controller.Preferred(100).Depth); // a long round trip and good drafts: as deep as allowed
    }

    [Fact]
    public void Next_NarrowLinkPoorDrafts_DoesNotSendAhead()
    {
        // Sending ahead wastes a round's transfer whenever the prediction fails: with poor drafts on a narrow link it does
        // not pay; with good drafts on a long, wide link it does.
        static double Narrow(RoundShape s, double alpha) => 25.0 * s.Nodes;
        var limits = new ShapeLimits(8, MaxPipeline: 1);
        var poor = SyntheticRanks.Run(new ShapeController(limits, transferMs: Narrow), 0.3, linkMs: 20, rounds: 500, withRanks: true, transfer: Narrow).Preferred(8);
        var good = SyntheticRanks.Run(new ShapeController(limits), 0.9, linkMs: 160, rounds: 500, withRanks: true).Preferred(8);
        Assert.Equal(0, poor.Pipeline);
        Assert.Equal(1, good.Pipeline);
    }
}

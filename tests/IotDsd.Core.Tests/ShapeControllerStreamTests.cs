using IotDsd.Core.Adaptive;
using Xunit;

namespace IotDsd.Core.Tests;

/// <summary>
/// The streamed round (depth 0: the verifier decodes K tokens and streams them down) as the controller's fallback on a
/// shared, compute-bound verifier. The verifier is simulated by a pass cost line F + s·B + t·B·tokens (the form
/// <c>iotdsd bench models</c> fits), a fixed per-token acceptance α (seeded), and a round trip outside the verifier.
/// </summary>
public sealed class ShapeControllerStreamTests
{
    private const int K = 16;

    private sealed record Verifier(double Fixed, double PerSession, double PerToken, double LinkMs = 1, double DraftMs = 0.05)
    {
        public double Pass(int batch, int tokensEach) => Fixed + (PerSession * batch) + (PerToken * batch * tokensEach);

        /// <summary>Committed tokens per ms of one session, every session in the batch doing the same.</summary>
        public double Goodput(int depth, double alpha, int batch) => depth == 0
            ? K / (LinkMs + (K * Pass(batch, 1)))
            : ((1 - Math.Pow(alpha, depth + 1)) / (1 - alpha)) / ((depth * DraftMs) + LinkMs + Pass(batch, depth + 1));
    }

    /// <summary>A compute-bound CPU verifier, like the small preset's fit on a 2-core VM (ms).</summary>
    private static readonly Verifier Cpu = new(25, 2, 3.2);

    /// <summary>A memory-bound verifier (a GPU below its compute bound): a pass of 160 tokens costs 15 % more than one of 32.</summary>
    private static readonly Verifier Gpu = new(10, 0.01, 0.002);

    private static ShapeController Controller(int streamTokens = K) => new(new ShapeLimits(8, StreamTokens: streamTokens), RoundShape.Chain(4));

    /// <summary>Runs <paramref name="rounds"/> rounds against the simulated verifier; returns the shapes chosen.</summary>
    private static List<RoundShape> Run(ShapeController controller, Verifier verifier, double alpha, Func<int, int> batchAt, int rounds, int seed = 99)
    {
        var random = new Random(seed);
        var shapes = new List<RoundShape>();
        for (var i = 0; i < rounds; i++)
        {
            var batch = batchAt(i);
            var shape = controller.Next(8);
            shapes.Add(shape);
            if (shape.Depth == 0)
            {
                controller.Observe(new RoundObservation(shape, 0, 0, default, 0, 0, verifier.LinkMs + (K * verifier.Pass(batch, 1)), batch, Streamed: K,
                    PassFixedMs: verifier.Fixed, PassPerTokenMs: verifier.PerSession + verifier.PerToken));
                continue;
            }

            var accepted = 0;
            while (accepted < shape.Depth && random.NextDouble() < alpha)
            {
                accepted++;
            }

            var verify = verifier.Pass(batch, shape.Depth + 1);
            controller.Observe(new RoundObservation(shape, shape.Depth, accepted, default, shape.Depth * verifier.DraftMs, verify, verifier.LinkMs + verify, batch,
                PassTokens: batch * (shape.Depth + 1), PassFixedMs: verifier.Fixed, PassPerTokenMs: verifier.PerSession + verifier.PerToken));
        }

        return shapes;
    }

    [Fact]
    public void Next_SharedComputeBoundVerifierPoorDrafts_Streams()
    {
        // At B = 8 and α = 0.3 every chain commits fewer tokens per ms than the verifier decoding alone.
        var best = Enumerable.Range(1, 8).Max(d => Cpu.Goodput(d, 0.3, 8));
        Assert.True(Cpu.Goodput(0, 0.3, 8) > best * 1.05, "the scenario must favour streaming");
        var controller = Controller();
        var shapes = Run(controller, Cpu, 0.3, _ => 8, 120);
        Assert.Equal(0, controller.Preferred(8).Depth);
        var late = shapes.Skip(60).ToList();
        Assert.True(late.Count(s => s.Depth == 0) >= late.Count * 0.7, $"streamed {late.Count(s => s.Depth == 0)} of {late.Count} late rounds");
        // While streaming, a chain of 1 after every StreamProbeEvery × K streamed tokens keeps acceptance known.
        Assert.All(late.Where(s => s.Depth > 0), s => Assert.Equal(1, s.Depth));
        Assert.Contains(late, s => s.Depth == 1);
    }

    [Fact]
    public void Next_VerifierToItself_NeverStreams()
    {
        // The same costs and drafts with the verifier to itself: whatever streaming would save, nobody else pays for
        // the drafts, so speculation stays on (streaming is the shared verifier's fallback).
        var controller = Controller();
        var shapes = Run(controller, Cpu, 0.3, _ => 1, 200);
        Assert.All(shapes, s => Assert.True(s.Depth >= 1, $"streamed at batch 1: {s}"));
        Assert.False(controller.MayStream);
    }

    [Fact]
    public void Next_SharedMemoryBoundVerifierGoodDrafts_Speculates()
    {
        // A GPU-like pass that costs about the same for 5 tokens as for 1: speculation multiplies throughput.
        var controller = Controller();
        var shapes = Run(controller, Gpu, 0.8, _ => 32, 200);
        Assert.True(controller.MayStream);
        Assert.True(controller.Preferred(8).Depth >= 3, $"chose {controller.Preferred(8)}");
        var late = shapes.Skip(100).ToList();
        Assert.True(late.Count(s => s.Depth == 0) <= late.Count / 10, $"streamed {late.Count(s => s.Depth == 0)} of the last {late.Count} rounds");
    }

    [Fact]
    public void Next_LoadFallsAway_BackToChains()
    {
        // Loaded (B = 8) for 80 rounds, then alone: the streamed rounds see the batch fall and speculation returns.
        var controller = Controller();
        var shapes = Run(controller, Cpu, 0.3, i => i < 80 ? 8 : 1, 200);
        Assert.Contains(shapes.Take(80), s => s.Depth == 0);
        Assert.All(shapes.Skip(140), s => Assert.True(s.Depth >= 1, $"still streaming alone: {s}"));
    }

    [Theory]
    [InlineData(16, true)]  // a CPU verifier shared by 16: one token per session per pass beats even a perfect chain
    [InlineData(8, true)]
    [InlineData(4, true)]
    [InlineData(2, false)]  // at 2, a chain whose drafts were all accepted would win: acceptance is unknown, so chain
    [InlineData(1, false)]  // alone: never
    public void Prime_LoadAtOpen_StreamsTheFirstRoundOnlyWhereNoChainCouldWin(int sessions, bool streams)
    {
        var controller = Controller();
        controller.Prime(sessions, Cpu.Fixed, Cpu.PerSession + Cpu.PerToken);
        Assert.True(controller.Primed);
        var perfect = Enumerable.Range(1, 8).Max(d => (d + 1) / (Cpu.Fixed + ((Cpu.PerSession + Cpu.PerToken) * sessions * (d + 1))));
        var stream = ShapeController.SharedMargin / (Cpu.Fixed + ((Cpu.PerSession + Cpu.PerToken) * sessions));
        Assert.Equal(streams, sessions >= ShapeController.SharedBatch && stream > perfect); // the rule, in the test's own terms
        Assert.Equal(streams ? 0 : 4, controller.Next(8).Depth);
    }

    [Fact]
    public void Prime_MemoryBoundVerifier_FirstRoundIsAChain_AndWithoutALineOrAfterARound_PrimingChangesNothing()
    {
        // A GPU-like line at 64 sessions: chains cost about what a stream does, so the first round speculates.
        var gpu = Controller();
        gpu.Prime(64, Gpu.Fixed, Gpu.PerSession + Gpu.PerToken);
        Assert.Equal(4, gpu.Next(8).Depth);

        // No cost line yet (a verifier that has run no pass): nothing to price a stream with.
        var fresh = Controller();
        fresh.Prime(16, 0, 0);
        Assert.Equal(4, fresh.Next(8).Depth);

        // Priming after the first round is ignored: what the rounds measured stands.
        var running = Controller();
        Run(running, Cpu, 0.9, _ => 1, 10);
        running.Prime(16, Cpu.Fixed, Cpu.PerSession + Cpu.PerToken);
        Assert.False(running.Primed);
        Assert.True(running.Next(8).Depth >= 1);
    }

    [Fact]
    public void Next_NoStreamTokens_NeverStreams()
    {
        var shapes = Run(Controller(streamTokens: 0), Cpu, 0.3, _ => 8, 150);
        Assert.All(shapes, s => Assert.True(s.Depth >= 1));
    }

    [Fact]
    public void Observe_StreamedRound_LeavesAcceptanceAlone()
    {
        var controller = Controller();
        Run(controller, Cpu, 0.3, _ => 8, 60);
        var before = controller.Acceptance.PooledTop;
        for (var i = 0; i < 50; i++)
        {
            controller.Observe(new RoundObservation(RoundShape.Chain(0), 0, 0, default, 0, 0, 1000, 8, Streamed: K));
        }

        Assert.Equal(before, controller.Acceptance.PooledTop);
        Assert.InRange(controller.Batch, 7.9, 8.1);
    }

    [Fact]
    public void Next_ChainsOnly_NoTreesNoPipeline()
    {
        var limits = new ShapeLimits(8, MaxWidth: 4, MaxNodes: 32, MaxPipeline: 1, StreamTokens: K);
        var controller = new ShapeController(limits, RoundShape.Chain(4)) { ChainsOnly = true };
        var shapes = Run(controller, new Verifier(5, 0.1, 0.05, LinkMs: 60), 0.6, _ => 1, 150);
        Assert.All(shapes, s => Assert.True(!s.IsTree && s.Pipeline == 0, $"chains only, got {s}"));
        controller.ChainsOnly = false;
        Run(controller, new Verifier(5, 0.1, 0.05, LinkMs: 60), 0.97, _ => 1, 150);
        Assert.True(controller.Preferred(8) is { Pipeline: 1 } or { IsTree: true }, $"a 60 ms link with the full menu: {controller.Preferred(8)}");
    }
}

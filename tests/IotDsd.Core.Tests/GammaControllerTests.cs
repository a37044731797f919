using IotDsd.Core.Adaptive;
using Xunit;

namespace IotDsd.Core.Tests;

public sealed class GammaControllerTests
{
    /// <summary>Feeds rounds whose acceptance follows a fixed α (seeded), with the given costs.</summary>
    private static GammaController Run(double alpha, double draftMs, double linkMs, Func<int, double> verifyMs, int maxGamma = 12, int rounds = 2000)
    {
        var random = new Random(1234);
        var controller = new GammaController(maxGamma, 4);
        for (var i = 0; i < rounds; i++)
        {
            var gamma = controller.Choose();
            var accepted = 0;
            while (accepted < gamma && random.NextDouble() < alpha)
            {
                accepted++;
            }

            var draft = gamma * draftMs;
            controller.Observe(gamma, accepted, draft, draft + linkMs + verifyMs(gamma), verifyMs(gamma));
        }

        return controller;
    }

    /// <summary>The γ that maximises true goodput, by brute force over the same cost model.</summary>
    private static int Best(double alpha, double draftMs, double linkMs, Func<int, double> verifyMs, int maxGamma = 12) =>
        Enumerable.Range(1, maxGamma).MaxBy(g => GammaController.ExpectedTokens(alpha, g) / ((g * draftMs) + linkMs + verifyMs(g)));

    [Theory]
    [InlineData(0.8, 0.5, 40.0)] // slow link, good drafts: long drafts
    [InlineData(0.8, 0.5, 0.2)]  // loopback: drafting dominates
    [InlineData(0.3, 0.5, 40.0)] // poor drafts
    [InlineData(0.6, 2.0, 5.0)]
    public void Choose_StationaryCosts_ConvergesToGoodputOptimum(double alpha, double draftMs, double linkMs)
    {
        double Verify(int g) => 3 + (0.5 * (g + 1));
        var controller = Run(alpha, draftMs, linkMs, Verify);
        var best = Best(alpha, draftMs, linkMs, Verify);
        var chosen = controller.Choose();
        var loss = 1 - (GammaController.ExpectedTokens(alpha, chosen) / ((chosen * draftMs) + linkMs + Verify(chosen))
                      / (GammaController.ExpectedTokens(alpha, best) / ((best * draftMs) + linkMs + Verify(best))));
        Assert.True(loss < 0.03, $"chose γ={chosen}, optimum {best}, goodput {loss:P1} below it");
        Assert.InRange(controller.Alpha, alpha - 0.05, alpha + 0.05);
    }

    [Fact]
    public void Choose_VerifierLoadGrows_ShortensDrafts()
    {
        // A verifier whose round time grows steeply with γ (a loaded CPU batch) makes long drafts expensive.
        var idle = Run(0.7, 0.3, 2, g => 1 + (0.1 * g)).Choose();
        var loaded = Run(0.7, 0.3, 2, g => 5 + (8.0 * g)).Choose();
        Assert.True(loaded < idle, $"loaded verifier chose γ={loaded}, idle {idle}");
    }

    [Fact]
    public void Choose_BeforeObservations_InitialGammaWithinCap()
    {
        var controller = new GammaController(8, 6);
        Assert.Equal(6, controller.Choose());
        Assert.Equal(3, controller.Choose(cap: 3));
    }

    [Fact]
    public void Observe_MalformedRounds_Ignored()
    {
        var controller = new GammaController(8, 4);
        controller.Observe(0, 0, 1, 1, 1);
        controller.Observe(4, 5, 1, 1, 1);
        controller.Observe(4, 2, double.NaN, 1, 1);
        Assert.Equal(0, controller.Observed);
    }

    [Fact]
    public void VerifyMs_LinearCosts_FitsLine()
    {
        var controller = new GammaController(8, 4);
        for (var g = 1; g <= 8; g++)
        {
            controller.Observe(g, 0, 0, 10 + (2 * (g + 1)), 10 + (2 * (g + 1)));
        }

        Assert.Equal(10 + (2 * 6), controller.VerifyMs(5), 6);
    }

    [Fact]
    public void Choose_TransferGrowsWithGamma_ShortensDrafts()
    {
        // A narrow link: each draft adds 10 ms on the wire. Told so, the controller keeps it out of the learned round
        // trip and chooses the optimum of the whole cost; without it, it lumps the transfer into a flat link time.
        double Transfer(int g, double alpha) => 10.0 * g;
        var random = new Random(1234);
        var told = new GammaController(12, 12, transferMs: Transfer);
        var blind = new GammaController(12, 12);
        foreach (var controller in new[] { told, blind })
        {
            for (var i = 0; i < 2000; i++)
            {
                var gamma = controller.Choose();
                var accepted = 0;
                while (accepted < gamma && random.NextDouble() < 0.8)
                {
                    accepted++;
                }

                var draft = gamma * 0.5;
                controller.Observe(gamma, accepted, draft, draft + 20 + Transfer(gamma, 0.8) + 5, 5);
            }
        }

        var best = Enumerable.Range(1, 12).MaxBy(g => GammaController.ExpectedTokens(0.8, g) / ((g * 0.5) + 20 + Transfer(g, 0.8) + 5));
        Assert.InRange(told.Choose(), best - 1, best + 1);
        Assert.Equal(20, told.LinkMs, 0);
        Assert.True(blind.Choose() > told.Choose(), $"blind {blind.Choose()}, told {told.Choose()}");
    }

    [Fact]
    public void Constructor_BadArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GammaController(0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GammaController(4, 1, halfLife: 0));
    }
}

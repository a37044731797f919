using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Tests;

public sealed class KneserNeyModelTests
{
    [Fact]
    public void SplitRecords_PercentLines_SeparateRecordsKeepingNewlines()
    {
        var records = NgramCorpus.SplitRecords(TestCorpus.Utf8("one\ntwo\n%\nthree\n%\n%\nfour"));
        Assert.Equal(["one\ntwo\n", "three\n", "four"], records.Select(r => System.Text.Encoding.UTF8.GetString(r)));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void Probabilities_AnyContext_StrictlyPositiveAndSumToOne(int order)
    {
        var model = KneserNeyModel.Train(NgramCorpus.SplitRecords(TestCorpus.Small(30_000)), order);
        var rng = new Random(order);
        var probs = new double[256];
        for (int trial = 0; trial < 200; trial++)
        {
            var ctx = RandomContext(rng, order - 1);
            model.Probabilities(ctx, probs);
            Assert.All(probs, p => Assert.True(p > 0));
            Assert.Equal(1.0, probs.Sum(), 1e-9);
            int w = rng.Next(256);
            Assert.Equal(probs[w], model.Probability(ctx, w), 1e-12);
        }
    }

    [Fact]
    public void Discounts_AreBetweenZeroAndOne()
    {
        var model = KneserNeyModel.Train(NgramCorpus.SplitRecords(TestCorpus.Small(30_000)), 4);
        Assert.Equal(4, model.Discounts.Count);
        Assert.All(model.Discounts, d => Assert.InRange(d, 0.01, 1.0));
    }

    internal static int[] RandomContext(Random rng, int width)
    {
        const string common = "the and of to a in is that it ";
        var ctx = new int[width];
        int kind = rng.Next(4);
        for (int i = 0; i < width; i++)
        {
            ctx[i] = kind switch
            {
                0 => rng.Next(256),                         // mostly unseen
                1 => common[rng.Next(common.Length)],       // likely seen
                2 => i < rng.Next(width + 1) ? KneserNeyModel.Pad : common[rng.Next(common.Length)], // padded
                _ => "The meaning of "[(i + rng.Next(3)) % 15],
            };
        }
        return ctx;
    }
}

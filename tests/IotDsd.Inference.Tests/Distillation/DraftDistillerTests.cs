using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Distillation;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tests.Transformer;
using IotDsd.Inference.Transformer;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests.Distillation;

[Collection(TinyPairCollection.Name)]
public sealed class DraftDistillerTests(TinyPairFixture pair, ITestOutputHelper output) : IDisposable
{
    private static readonly DistillationSettings Settings = new(48, 96, 16, 16, new SamplingParams(0.8f, 0, 1f), 11);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iotdsd-distil-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static List<byte[]> Records => NgramCorpus.SplitRecords(TestCorpus.Small());

    [Fact]
    public void Agreement_TargetAgainstItself_IsOne()
    {
        using var target = ModelDirectory.Load(pair.TargetDir);
        using var same = ModelDirectory.Load(pair.TargetDir);
        var alpha = DraftDistiller.Agreement(target, same, Records, Settings with { Sequences = 4 });
        Assert.InRange(alpha, 0.9999, 1.0001);
    }

    [Fact]
    public void Distil_TinyTarget_AcceptsFarMoreThanACorpusNgramOfTheSameOrder()
    {
        using var target = ModelDirectory.Load(pair.TargetDir);
        var distilledDir = Path.Combine(_root, "distilled");
        var corpusDir = Path.Combine(_root, "corpus");
        var (manifest, positions) = DraftDistiller.Distil(target, TestCorpus.Small(), "test", 2, distilledDir, Settings);
        NgramModelBuilder.Build(TestCorpus.Small(), 2, "draft", corpusDir);
        Assert.Equal(Settings.Sequences * Settings.TokensPerSequence, positions);
        Assert.Equal(target.VocabSize, manifest.VocabSize);
        Assert.StartsWith("distilled:", manifest.Corpus!.Name, StringComparison.Ordinal);

        using var distilled = ModelDirectory.Load(distilledDir);
        using var fromCorpus = ModelDirectory.Load(corpusDir);
        var heldOut = Settings with { Sequences = 8 };
        var a = DraftDistiller.Agreement(target, distilled, Records, heldOut);
        var b = DraftDistiller.Agreement(target, fromCorpus, Records, heldOut);
        output.WriteLine($"α distilled {a:0.000}, corpus bigram {b:0.000}");
        Assert.True(a > b + 0.15, $"distilled α {a:0.000} should clearly beat the corpus bigram's {b:0.000}");
        Assert.InRange(a, 0.5, 1.0);
    }

    [Fact]
    public void Sample_SameSettings_SameRecords()
    {
        using var target = ModelDirectory.Load(pair.TargetDir);
        var small = Settings with { Sequences = 3, TokensPerSequence = 20, Batch = 2 };
        var first = DraftDistiller.Sample(target, Records, small);
        var second = DraftDistiller.Sample(target, Records, small);
        Assert.Equal(3, first.Count);
        Assert.All(first.Zip(second), p => Assert.Equal(p.First, p.Second));
        Assert.NotEqual(first[0], DraftDistiller.Sample(target, Records, small with { Seed = 12 })[0]);
    }

    [Theory]
    [InlineData(0, 10, 1, "at least one sequence")]
    [InlineData(1, 1, 1, "at least two tokens")]
    [InlineData(1, 10, 0, "at least one sequence is needed")]
    public void Sample_BadSettings_ClearError(int sequences, int tokens, int batch, string expected)
    {
        using var target = ModelDirectory.Load(pair.TargetDir);
        var bad = Settings with { Sequences = sequences, TokensPerSequence = tokens, Batch = batch };
        var problem = bad.Problem();
        Assert.NotNull(problem);
        if (batch > 0) Assert.Contains(expected, problem, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => DraftDistiller.Sample(target, Records, bad));
    }

    [Fact]
    public void PaddedNgram_MatchesUnpaddedOnBytes_AndNeverPredictsPaddedIds()
    {
        var plainDir = Path.Combine(_root, "plain");
        var paddedDir = Path.Combine(_root, "padded");
        NgramModelBuilder.Build(TestCorpus.Small(20_000), 3, "draft", plainDir);
        NgramModelBuilder.Build(TestCorpus.Small(20_000), 3, "draft", paddedDir, vocabSize: 1000);
        using var plain = ModelDirectory.Load(plainDir);
        using var padded = ModelDirectory.Load(paddedDir);
        Assert.Equal(1000, padded.VocabSize);
        int[] tokens = [.. "Hello, world"u8.ToArray().Select(b => (int)b)];
        var a = new float[3 * plain.VocabSize];
        var b = new float[3 * padded.VocabSize];
        using (var s = plain.CreateSequence()) s.Feed(tokens, a);
        using var seq = padded.CreateSequence();
        seq.Feed(tokens, b);
        for (int r = 0; r < 3; r++)
        {
            Assert.Equal(a.AsSpan(r * 256, 256).ToArray(), b.AsSpan(r * 1000, 256).ToArray());
            Assert.All(b.AsSpan((r * 1000) + 256, 744).ToArray(), v => Assert.Equal(NgramOnnxModel.PaddedLogit, v));
        }

        var probs = new float[1000];
        Distribution.FromLogits(b.AsSpan(2000, 1000), new SamplingParams(1f, 0, 1f), probs);
        Assert.All(probs[256..], p => Assert.Equal(0f, p));

        // Batched feeding pads the same way.
        using var other = padded.CreateSequence();
        var batched = new float[padded.VocabSize];
        padded.FeedBatch([new FeedRequest(other, tokens, batched)]);
        Assert.Equal(b.AsSpan(2000, 1000).ToArray(), batched);
    }

    [Fact]
    public void FromCounts_CountsOfACorpus_EqualTrain()
    {
        var records = NgramCorpus.SplitRecords(TestCorpus.Small(10_000));
        var trained = KneserNeyModel.Train(records, 3);
        var raw = new Dictionary<long, int>[3];
        for (int k = 0; k < 3; k++) raw[k] = [];
        foreach (var rec in records)
        {
            int[] r = [.. rec.Select(b => (int)b)];
            for (int i = 0; i < r.Length; i++)
            {
                Bump(raw[0], r[i]);
                for (int k = 2; k <= 3; k++) Bump(raw[k - 1], KneserNeyModel.NgramKey(r.AsSpan(0, i), k, r[i]));
            }
        }

        var rebuilt = KneserNeyModel.FromCounts(raw, 3);
        var p = new double[256];
        var q = new double[256];
        foreach (var context in new[] { "th", "e ", "qz", "" })
        {
            int[] c = [.. context.Select(ch => (int)ch)];
            trained.Probabilities(c, p);
            rebuilt.Probabilities(c, q);
            Assert.Equal(p, q);
        }
    }

    [Fact]
    public void Distil_NonByteTarget_ClearError()
    {
        // A target that predicts a padded id cannot be distilled into a byte n-gram.
        using var target = new PaddedPredictor();
        var ex = Assert.Throws<InvalidOperationException>(() => DraftDistiller.Sample(target, Records, Settings with { Sequences = 1, TokensPerSequence = 2, Sampling = SamplingParams.Greedy }));
        Assert.Contains("byte-level", ex.Message, StringComparison.Ordinal);
    }

    private static void Bump(Dictionary<long, int> d, long key) => d[key] = d.GetValueOrDefault(key) + 1;

    /// <summary>A model whose argmax is always a padded id (300): the one invalid input a distillation can meet.</summary>
    private sealed class PaddedPredictor : ILanguageModel
    {
        public string Name => "padded";
        public int VocabSize => 512;
        public IModelSequence CreateSequence() => new Seq();
        public void FeedBatch(IReadOnlyList<FeedRequest> batch)
        {
            foreach (var r in batch) r.Sequence.Feed(r.Tokens.Span, r.Logits.Span);
        }

        public void Dispose()
        {
        }

        private sealed class Seq : IModelSequence
        {
            public int Length { get; private set; }
            public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
            {
                Length += tokens.Length;
                logits.Clear();
                for (int r = 0; r * 512 < logits.Length; r++) logits[(r * 512) + 300] = 10f;
            }

            public void Truncate(int length) => Length = length;
            public void Dispose()
            {
            }
        }
    }
}

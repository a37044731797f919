using System.Diagnostics;
using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests;

public sealed class NgramOnnxModelTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir;

    public NgramOnnxModelTests(ITestOutputHelper output)
    {
        _output = output;
        _dir = Path.Combine(Path.GetTempPath(), "iotdsd-ngram-" + Guid.NewGuid().ToString("N"));
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(3, 0)]
    [InlineData(5, 0)]
    [InlineData(2, NgramOnnxCompiler.DenseContextLimit)]
    [InlineData(3, NgramOnnxCompiler.DenseContextLimit)]
    [InlineData(5, NgramOnnxCompiler.DenseContextLimit)]
    [InlineData(4, int.MaxValue)]
    public void Onnx_RandomContexts_MatchesReferenceKneserNey(int order, int denseLimit)
    {
        var records = NgramCorpus.SplitRecords(TestCorpus.Small());
        var reference = KneserNeyModel.Train(records, order);
        var path = Path.Combine(_dir, "m.onnx");
        Directory.CreateDirectory(_dir);
        File.WriteAllBytes(path, NgramOnnxCompiler.Compile(reference, denseContextLimit: denseLimit));
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(path);

        const int n = 300;
        int width = order - 1;
        var rng = new Random(42 + order);
        var contexts = new long[n * width];
        var rows = new int[n][];
        for (int r = 0; r < n; r++)
        {
            rows[r] = KneserNeyModelTests.RandomContext(rng, width);
            for (int c = 0; c < width; c++) contexts[r * width + c] = rows[r][c];
        }
        using var input = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(contexts, [n, width]);
        using var results = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["context"], [input], ["logits"]);
        var logits = results[0].GetTensorDataAsSpan<float>().ToArray();
        Assert.Equal(n * 256, logits.Length);

        var probs = new double[256];
        for (int r = 0; r < n; r++)
        {
            reference.Probabilities(rows[r], probs);
            double sum = 0;
            for (int w = 0; w < 256; w++)
            {
                float lp = logits[r * 256 + w];
                Assert.True(Math.Abs(lp - Math.Log(probs[w])) < 1e-5,
                    $"row {r} [{string.Join(",", rows[r])}] w={w}: onnx {lp} vs reference {Math.Log(probs[w])}");
                sum += Math.Exp(lp);
            }
            Assert.Equal(1.0, sum, 1e-5);
        }
    }

    [Fact]
    public void FeedBatch_SeveralSequences_EqualsFeedingEach()
    {
        using var model = BuildModel(4);
        var prompts = new[] { "The cat", "A", "", "Hello, world! How are you?", "zzqx" };
        var expected = new float[prompts.Length][];
        for (int i = 0; i < prompts.Length; i++)
        {
            using var seq = model.CreateSequence();
            seq.Feed(Bytes("prefix "), []);
            var toks = Bytes(prompts[i]);
            expected[i] = new float[toks.Length * 256];
            seq.Feed(toks, expected[i]);
        }

        var seqs = prompts.Select(_ => model.CreateSequence()).ToArray();
        foreach (var s in seqs) s.Feed(Bytes("prefix "), []);
        var actual = prompts.Select(p => new float[Bytes(p).Length * 256]).ToArray();
        model.FeedBatch([.. prompts.Select((p, i) => new FeedRequest(seqs[i], Bytes(p), actual[i]))]);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(expected[i], actual[i]);
            Assert.Equal(Bytes("prefix " + prompts[i]).Length, seqs[i].Length);
        }
    }

    [Fact]
    public void FeedBatch_ZeroRows_OnlyExtendsHistory()
    {
        using var model = BuildModel(3);
        using var a = model.CreateSequence();
        using var b = model.CreateSequence();
        model.FeedBatch([new FeedRequest(a, Bytes("ab"), Memory<float>.Empty), new FeedRequest(b, Bytes("xyz"), Memory<float>.Empty)]);
        Assert.Equal(2, a.Length);
        Assert.Equal(3, b.Length);

        using var fresh = model.CreateSequence();
        var expected = new float[256];
        fresh.Feed(Bytes("abc"), expected);
        var actual = new float[256];
        a.Feed(Bytes("c"), actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void FeedBatch_ForeignSequence_Throws()
    {
        using var m1 = BuildModel(3);
        using var m2 = (NgramOnnxModel)ModelDirectory.Load(Path.Combine(_dir, "o3"));
        using var s = m2.CreateSequence();
        Assert.Throws<ArgumentException>(() => m1.FeedBatch([new FeedRequest(s, Bytes("a"), new float[256])]));
        Assert.Equal(0, s.Length);
    }

    [Fact]
    public void Truncate_ThenRefeed_EqualsFreshSequence()
    {
        using var model = BuildModel(5);
        using var a = model.CreateSequence();
        a.Feed(Bytes("The quick brown fox"), []);
        a.Truncate(4);
        var la = new float[3 * 256];
        a.Feed(Bytes("red"), la);

        using var b = model.CreateSequence();
        var lb = new float[7 * 256];
        b.Feed(Bytes("The red"), lb);
        Assert.Equal(lb.AsSpan(4 * 256).ToArray(), la);
        Assert.Equal(7, a.Length);
    }

    [Fact]
    public void Feed_PartialRows_EqualsTailOfFullRows()
    {
        using var model = BuildModel(5);
        var toks = Bytes("It was the best of times");
        using var full = model.CreateSequence();
        var all = new float[toks.Length * 256];
        full.Feed(toks, all);

        using var part = model.CreateSequence();
        var tail = new float[3 * 256];
        part.Feed(toks, tail);
        Assert.Equal(all.AsSpan((toks.Length - 3) * 256).ToArray(), tail);

        // Row of the first token: the prediction after one byte at a record start.
        using var one = model.CreateSequence();
        var first = new float[256];
        one.Feed(toks.AsSpan(0, 1), first);
        Assert.Equal(all.AsSpan(0, 256).ToArray(), first);
    }

    [Fact]
    public void Feed_InvalidArguments_Throw()
    {
        using var model = BuildModel(3);
        using var seq = model.CreateSequence();
        Assert.Throws<ArgumentException>(() => seq.Feed(Bytes("ab"), new float[3 * 256]));
        Assert.Throws<ArgumentException>(() => seq.Feed(Bytes("ab"), new float[100]));
        Assert.Throws<ArgumentOutOfRangeException>(() => seq.Feed([300], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => seq.Truncate(1));
        Assert.Equal(0, seq.Length);
    }

    [Fact]
    public void Feed_Latency_ReportedInOutput()
    {
        using var model = BuildModel(5);
        using var seq = model.CreateSequence();
        seq.Feed(Bytes("The meaning of life is "), []);
        var one = new float[256];
        var six = new float[6 * 256];
        var tok = Bytes("a");
        var six_ = Bytes("abcdef");
        for (int i = 0; i < 200; i++) { seq.Feed(tok, one); seq.Truncate(seq.Length - 1); seq.Feed(six_, six); seq.Truncate(seq.Length - 6); }
        const int iters = 2000;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < iters; i++) { seq.Feed(tok, one); seq.Truncate(seq.Length - 1); }
        double single = sw.Elapsed.TotalMicroseconds / iters;
        sw.Restart();
        for (int i = 0; i < iters; i++) { seq.Feed(six_, six); seq.Truncate(seq.Length - 6); }
        double sixRows = sw.Elapsed.TotalMicroseconds / iters;
        _output.WriteLine($"order-5 (60 KB corpus) Feed: 1 row {single:F1} us, 6 rows {sixRows:F1} us");
    }

    private NgramOnnxModel BuildModel(int order)
    {
        var dir = Path.Combine(_dir, $"o{order}");
        NgramModelBuilder.Build(TestCorpus.Small(), order, "test", dir);
        return (NgramOnnxModel)ModelDirectory.Load(dir);
    }

    private static int[] Bytes(string s) => TestCorpus.Utf8(s).Select(b => (int)b).ToArray();
}

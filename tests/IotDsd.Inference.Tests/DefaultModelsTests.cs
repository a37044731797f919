using System.Diagnostics;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests;

[Collection(DefaultPairCollection.Name)]
public sealed class DefaultModelsTests(DefaultPairFixture pair, ITestOutputHelper output)
{
    [Fact]
    public void Ensure_Twice_ReusesAndBuildsDeterministically()
    {
        var first = ModelDirectory.Validate(pair.TargetDir);
        var sw = Stopwatch.StartNew();
        var again = DefaultModels.Ensure(pair.CacheRoot);
        output.WriteLine($"default pair: first build {pair.BuildTime.TotalSeconds:F2} s, cached Ensure {sw.ElapsedMilliseconds} ms");
        Assert.Equal((pair.DraftDir, pair.TargetDir), again);

        // A fresh build elsewhere yields byte-identical files.
        var other = Path.Combine(pair.CacheRoot, "rebuild");
        try
        {
            var (_, targetDir) = DefaultModels.Ensure(other);
            var rebuilt = ModelDirectory.Validate(targetDir);
            Assert.Equal(first.Sha256["model"], rebuilt.Sha256["model"]);
            Assert.Equal(File.ReadAllText(Path.Combine(pair.TargetDir, "manifest.json")),
                File.ReadAllText(Path.Combine(targetDir, "manifest.json")));
        }
        finally
        {
            Directory.Delete(other, recursive: true);
        }
    }

    [Fact]
    public void Ensure_CorruptedCacheEntry_IsRebuilt()
    {
        var root = Path.Combine(pair.CacheRoot, "corrupt");
        try
        {
            var (draft, _) = DefaultModels.Ensure(root);
            File.WriteAllText(Path.Combine(draft, "model.onnx"), "garbage");
            var (draft2, _) = DefaultModels.Ensure(root);
            Assert.Equal(draft, draft2);
            Assert.True(ModelDirectory.IsValid(draft2));
            Assert.Empty(Directory.GetDirectories(root, ".*"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Ensure_ConcurrentCallers_AgreeAndLeaveNoTemporaries()
    {
        var root = Path.Combine(pair.CacheRoot, "race");
        try
        {
            var results = new (string, string)[3];
            Parallel.For(0, results.Length, i => results[i] = DefaultModels.Ensure(root));
            Assert.All(results, r => Assert.Equal(results[0], r));
            Assert.True(ModelDirectory.IsValid(results[0].Item1));
            Assert.True(ModelDirectory.IsValid(results[0].Item2));
            Assert.Empty(Directory.GetDirectories(root, ".*"));
            Assert.Equal(2, Directory.GetDirectories(root).Length);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Ensure_UnwritableCache_ThrowsModelLoadException()
    {
        var file = Path.Combine(pair.CacheRoot, "not-a-dir");
        File.WriteAllText(file, "x");
        var e = Assert.Throws<ModelLoadException>(() => DefaultModels.Ensure(Path.Combine(file, "sub")));
        Assert.Contains("IOTDSD_MODEL_CACHE", e.Message);
    }

    [Fact]
    public void Manifests_TargetBeatsDraftOnHeldOut()
    {
        var draft = ModelDirectory.ReadManifest(pair.DraftDir);
        var target = ModelDirectory.ReadManifest(pair.TargetDir);
        output.WriteLine($"held-out bits/byte: draft (order {draft.Order}) {draft.HeldoutBitsPerByte}, target (order {target.Order}) {target.HeldoutBitsPerByte}");
        output.WriteLine($"model.onnx bytes: draft {new FileInfo(Path.Combine(pair.DraftDir, "model.onnx")).Length}, " +
            $"target {new FileInfo(Path.Combine(pair.TargetDir, "model.onnx")).Length}");
        output.WriteLine($"discounts: draft [{string.Join(", ", draft.Discounts!)}], target [{string.Join(", ", target.Discounts!)}]");
        Assert.Equal($"ngram-{DefaultModels.DraftOrder}-draft", draft.Name);
        Assert.Equal("ngram-5-target", target.Name);
        Assert.Equal(DefaultModels.Corpus.Length, target.Corpus!.Bytes);
        Assert.Equal(647_785, target.Corpus.Bytes);
        Assert.True(target.HeldoutBitsPerByte < draft.HeldoutBitsPerByte);
        Assert.InRange(target.HeldoutBitsPerByte!.Value, 1.0, 4.0);
    }

    [Fact]
    public void Target_GreedyDecode_WritesSample()
    {
        var load = Stopwatch.StartNew();
        using var model = ModelDirectory.Load(pair.TargetDir);
        output.WriteLine($"target load (sha256 check + session) {load.ElapsedMilliseconds} ms");
        var tokenizer = TokenizerFactory.ForModelDirectory(pair.TargetDir);
        using var seq = model.CreateSequence();
        var decoder = tokenizer.CreateStreamDecoder();
        var prompt = "The meaning of life is";
        var logits = new float[256];
        seq.Feed(tokenizer.Encode(prompt), logits);
        var text = new System.Text.StringBuilder(prompt);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 80; i++)
        {
            int next = ArgMax(logits);
            text.Append(decoder.Append(next));
            seq.Feed([next], logits);
        }
        text.Append(decoder.Flush());
        output.WriteLine($"greedy, 80 bytes in {sw.Elapsed.TotalMilliseconds:F1} ms: {text}");
        Assert.Equal(prompt.Length + 80, seq.Length);
        Assert.True(text.Length > prompt.Length);
    }

    [Theory]
    [InlineData("draft")]
    [InlineData("target")]
    public void FeedLatency_ReportedInOutput(string role)
    {
        using var model = ModelDirectory.Load(role == "draft" ? pair.DraftDir : pair.TargetDir);
        using var seq = model.CreateSequence();
        seq.Feed(ByteTokenizer.Instance.Encode("The meaning of life is "), []);
        var one = new float[256];
        var six = new float[6 * 256];
        int[] tok = [(int)'a'];
        var toks6 = ByteTokenizer.Instance.Encode("abcdef");
        for (int i = 0; i < 300; i++) { seq.Feed(tok, one); seq.Truncate(seq.Length - 1); seq.Feed(toks6, six); seq.Truncate(seq.Length - 6); }
        // Median of batches: the machine may be shared, so single long loops are noisy.
        double single = MedianMicroseconds(() => { seq.Feed(tok, one); seq.Truncate(seq.Length - 1); });
        double sixRows = MedianMicroseconds(() => { seq.Feed(toks6, six); seq.Truncate(seq.Length - 6); });
        output.WriteLine($"{model.Name} Feed latency: 1 row {single:F1} us, 6 rows {sixRows:F1} us");
    }

    private static double MedianMicroseconds(Action action, int batches = 25, int perBatch = 100)
    {
        var samples = new double[batches];
        for (int b = 0; b < batches; b++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < perBatch; i++) action();
            samples[b] = sw.Elapsed.TotalMicroseconds / perBatch;
        }
        Array.Sort(samples);
        return samples[batches / 2];
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}

using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tokenizers;
using IotDsd.Inference.Transformer;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests.Transformer;

[Collection(TinyPairCollection.Name)]
public sealed class TransformerModelTests(TinyPairFixture pair, ITestOutputHelper output)
{
    private const float Tolerance = 2e-4f;

    private static int[] Text(string s) => ByteTokenizer.Instance.Encode(s);

    private static float[] Forward(ILanguageModel model, int[] tokens)
    {
        using var seq = model.CreateSequence();
        var logits = new float[tokens.Length * model.VocabSize];
        seq.Feed(tokens, logits);
        return logits;
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= Tolerance, $"{what}: max |difference| {worst} > {Tolerance}");
    }

    [Fact]
    public void CacheBytesPerToken_FromTheKvShape()
    {
        // GPT-2 small in fp32: 12 layers × (key + value) × 12 heads × 64 dims × 4 bytes.
        var small = TransformerConfig.ForPreset("small", "target", 1);
        Assert.Equal(73_728, CacheShape.BytesPerToken(small.Layers, small.Heads, small.HeadDim, sizeof(float)));
        Assert.Equal(12L * 2 * 768 * 4, CacheShape.BytesPerToken(12, 12, 64, 4));
        Assert.Equal(18_432, CacheShape.BytesPerToken(TransformerConfig.DraftLayers(small.Layers), small.Heads, small.HeadDim, sizeof(float))); // its 3-layer draft

        // The loaded tiny target (4 layers, 4 heads of 32) reports its own: 4 × 2 × 4 × 32 × 4 = 4096 bytes.
        using ILanguageModel target = ModelDirectory.Load(pair.TargetDir);
        Assert.Equal(4096, target.CacheBytesPerToken);
        using ILanguageModel draft = ModelDirectory.Load(pair.DraftDir);
        Assert.Equal(1024, draft.CacheBytesPerToken);
        Assert.Throws<ArgumentOutOfRangeException>(() => CacheShape.BytesPerToken(0, 12, 64, 4));
    }

    [Fact]
    public void Load_BuiltTiny_HasSlotSignatureAndShape()
    {
        var manifest = ModelDirectory.Validate(pair.TargetDir);
        Assert.Equal("transformer", manifest.Kind);
        using var model = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        Assert.Equal(256, model.VocabSize);
        Assert.Equal(4, model.Layers);
        Assert.Equal(4, model.KvHeads);
        Assert.Equal(32, model.HeadDim);
        var inputs = model.Session.InputMetadata;
        Assert.Equal(["input_ids", "position_ids", "attention_bias", "logits_indices", "kv_write_from", "kv_write_to", "past_key_values.0.key", "past_key_values.0.value"], inputs.Keys.Take(8));
        Assert.Equal("kv_write_from", model.Signature.KvWriteFrom);
        // present is the past written in: the same length axis, bound to the same memory.
        Assert.Equal(inputs["past_key_values.0.key"].Dimensions.Length, model.Session.OutputMetadata["present.0.key"].Dimensions.Length);
        Assert.Equal(KvLayout.Slots, model.Layout);
        Assert.Contains("present.3.value", model.Session.OutputMetadata.Keys);
        using var draft = (TransformerModel)ModelDirectory.Load(pair.DraftDir);
        Assert.Equal(1, draft.Layers);
        Assert.IsType<HfBpeTokenizer>(TokenizerFactory.ForModelDirectory(pair.TargetDir));
    }

    [Fact]
    public void Load_OptimumExportLayout_NoManifest_RunsLikeManifestDirectory()
    {
        var dir = Path.Combine(pair.Root, "optimum-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(pair.TargetDir, "model.onnx"), Path.Combine(dir, "model.onnx"));
        File.Copy(Path.Combine(pair.TargetDir, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        var missing = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("config.json", missing.Message);

        File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type":"gpt2","vocab_size":256,"n_positions":1024}""");
        using var exported = ModelDirectory.Load(dir);
        using var built = ModelDirectory.Load(pair.TargetDir);
        var tokens = TokenizerFactory.ForModelDirectory(dir).Encode("Bring your own model");
        AssertClose(Forward(built, tokens), Forward(exported, tokens), "optimum layout");
    }

    [Fact]
    public void Feed_Incremental_EqualsFullForward()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        var tokens = Text("The meaning of life is forty-two, said the computer; nobody laughed.");
        var full = Forward(model, tokens);
        using var seq = model.CreateSequence();
        var row = new float[model.VocabSize];
        for (int i = 0; i < tokens.Length; i++)
        {
            seq.Feed(tokens.AsSpan(i, 1), row);
            AssertClose(full.AsSpan(i * model.VocabSize, model.VocabSize), row, $"token {i}");
        }
        Assert.Equal(tokens.Length, seq.Length);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(8)]
    public void Feed_ChunkedVerify_EqualsFullForward(int gamma)
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        var tokens = Text("A computer is a machine that can be programmed to carry out sequences of operations.");
        var full = Forward(model, tokens);
        using var seq = model.CreateSequence();
        int v = model.VocabSize, at = 5;
        seq.Feed(tokens.AsSpan(0, at), new float[v]);
        while (at < tokens.Length)
        {
            int n = Math.Min(gamma + 1, tokens.Length - at);
            var rows = new float[n * v];
            seq.Feed(tokens.AsSpan(at, n), rows);
            AssertClose(full.AsSpan(at * v, n * v), rows, $"chunk at {at}");
            at += n;
        }
    }

    [Fact]
    public void Feed_LongPromptLastRowOnly_PrefillsInChunks_SameRowsAndCache()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        var tokens = Text(string.Concat(Enumerable.Repeat("A long prompt runs in chunks, and every slot of its cache stays. ", 10)));
        Assert.True(tokens.Length > (2 * TransformerSequence.PrefillChunk) + 1);
        int v = model.VocabSize;
        var next = Text(" Then more.");
        var full = Forward(model, [.. tokens, .. next]); // every row wanted: one pass over everything

        using var chunked = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        using var seq = chunked.CreateSequence();
        var last = new float[v];
        seq.Feed(tokens, last);
        long width = chunked.LogitsWidth * sizeof(float);
        // The slot graph computes the output layer for the rows asked for only: one row, however long the prompt.
        Assert.Equal(width, chunked.SlotLogitsBufferBytes);
        Assert.True(chunked.KvPoolState.Capacity >= tokens.Length);
        Assert.Equal(tokens.Length, seq.Length);
        AssertClose(full.AsSpan((tokens.Length - 1) * v, v), last, "prompt's last row");
        Assert.Equal(Distribution.ArgMax(full.AsSpan((tokens.Length - 1) * v, v)), Distribution.ArgMax(last));

        Assert.Equal((tokens.Length + next.Length) * width, ((TransformerModel)model).SlotLogitsBufferBytes); // every row wanted above
        output.WriteLine($"{tokens.Length}-token prompt: logits buffer {(tokens.Length + next.Length) * width} B for every row, {chunked.SlotLogitsBufferBytes} B for the last row");

        // The cache the chunks wrote serves what follows exactly as one pass's would.
        var rows = new float[next.Length * v];
        seq.Feed(next, rows);
        AssertClose(full.AsSpan(tokens.Length * v), rows, "rows after the chunked prefill");
    }

    [Fact]
    public void Truncate_ThenFeed_EqualsRefeeding()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        int v = model.VocabSize;
        var prefix = Text("Never put off till tomorrow");
        var rejected = Text(" the thing");
        var accepted = Text(" what you can do today.");
        using var seq = model.CreateSequence();
        seq.Feed(prefix, new float[v]);
        seq.Feed(rejected, new float[rejected.Length * v]);
        seq.Truncate(prefix.Length);
        var rolledBack = new float[accepted.Length * v];
        seq.Feed(accepted, rolledBack);
        var expected = Forward(model, [.. prefix, .. accepted]);
        AssertClose(expected.AsSpan(prefix.Length * v), rolledBack, "after rollback");
    }

    [Fact]
    public void Feed_PastCapacityGrowth_KeepsCache()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        var tokens = Text(string.Concat(Enumerable.Repeat("Growth past the first capacity bucket keeps every slot. ", 3)));
        Assert.True(tokens.Length > 64);
        var full = Forward(model, tokens);
        using var seq = model.CreateSequence();
        int v = model.VocabSize;
        var row = new float[v];
        for (int i = 0; i < tokens.Length; i++) seq.Feed(tokens.AsSpan(i, 1), row);
        AssertClose(full.AsSpan((tokens.Length - 1) * v), row, "last row after growth");
    }

    [Fact]
    public void FeedBatch_RaggedLengths_EqualsOneAtATime()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        int v = model.VocabSize;
        string[] prefixes = ["Q: Why", "A long prefix that is much longer than the others in this batch", "x", "Knowledge is power", ""];
        string[] chunks = [" did the chicken", "!", " marks the spot", " and", "A fresh sequence's first chunk"];
        var batched = new IModelSequence[prefixes.Length];
        var single = new IModelSequence[prefixes.Length];
        try
        {
            var requests = new List<FeedRequest>();
            for (int i = 0; i < prefixes.Length; i++)
            {
                batched[i] = model.CreateSequence();
                single[i] = model.CreateSequence();
                batched[i].Feed(Text(prefixes[i]), []);
                single[i].Feed(Text(prefixes[i]), []);
                var chunk = Text(chunks[i]);
                requests.Add(new FeedRequest(batched[i], chunk, new float[chunk.Length * v]));
            }
            requests.Add(new FeedRequest(model.CreateSequence(), Array.Empty<int>(), Array.Empty<float>())); // a no-op member
            model.FeedBatch(requests);
            for (int i = 0; i < prefixes.Length; i++)
            {
                var chunk = Text(chunks[i]);
                var expected = new float[chunk.Length * v];
                single[i].Feed(chunk, expected);
                AssertClose(expected, requests[i].Logits.Span, $"row {i}");
                Assert.Equal(single[i].Length, batched[i].Length);
            }

            // The caches the batch wrote back continue exactly like the unbatched ones.
            var next = Text(" then");
            for (int i = 0; i < prefixes.Length; i++)
            {
                var a = new float[v];
                var b = new float[v];
                batched[i].Feed(next, a);
                single[i].Feed(next, b);
                AssertClose(b, a, $"continuation {i}");
            }
        }
        finally
        {
            foreach (var s in batched) s?.Dispose();
            foreach (var s in single) s?.Dispose();
        }
    }

    [Fact]
    public void Feed_SteadyStateDecode_AllocatesNoManagedMemory()
    {
        using var model = ModelDirectory.Load(pair.DraftDir);
        using var seq = model.CreateSequence();
        var row = new float[model.VocabSize];
        seq.Feed(Text("Warm up"), row);
        for (int i = 0; i < 3; i++) seq.Feed([Distribution.ArgMax(row)], row); // first use of the 1-token binding
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) seq.Feed([Distribution.ArgMax(row)], row); // stays inside the 32-slot capacity
        long perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / 20;
        output.WriteLine($"{perStep} managed bytes per decode step");
        Assert.Equal(0, perStep);
    }

    [Fact]
    public void Feed_BadInput_ClearErrorAndCacheUnchanged()
    {
        using var model = ModelDirectory.Load(pair.TargetDir);
        using var seq = model.CreateSequence();
        seq.Feed(Text("abc"), new float[model.VocabSize]);
        Assert.Throws<ArgumentOutOfRangeException>(() => seq.Feed([1, 256], new float[model.VocabSize]));
        Assert.Throws<ArgumentException>(() => seq.Feed([1], new float[2 * model.VocabSize]));
        var tooLong = new int[1100];
        var e = Assert.Throws<ArgumentException>(() => seq.Feed(tooLong, []));
        Assert.Contains("context of 1024", e.Message);
        Assert.Equal(3, seq.Length);
    }

    [Fact]
    public void DraftAndTarget_TinyPair_RealisticAgreement()
    {
        using var draft = ModelDirectory.Load(pair.DraftDir);
        using var target = ModelDirectory.Load(pair.TargetDir);
        var text = Text("The meaning of life is not a question that a computer can answer, but it may try anyway.");
        var p = Forward(target, text);
        var q = Forward(draft, text);
        int v = target.VocabSize, agree = 0;
        double overlap = 0;
        var sampling = new SamplingParams(0.7f, 0, 1f);
        var pp = new float[v];
        var qq = new float[v];
        for (int i = 0; i < text.Length; i++)
        {
            if (Distribution.ArgMax(p.AsSpan(i * v, v)) == Distribution.ArgMax(q.AsSpan(i * v, v))) agree++;
            Distribution.FromLogits(p.AsSpan(i * v, v), sampling, pp);
            Distribution.FromLogits(q.AsSpan(i * v, v), sampling, qq);
            for (int t = 0; t < v; t++) overlap += Math.Min(pp[t], qq[t]);
        }
        double greedy = (double)agree / text.Length, alpha = overlap / text.Length;
        output.WriteLine($"greedy agreement {greedy:P1}, expected acceptance at T=0.7 {alpha:P1}");
        Assert.InRange(greedy, 0.4, 0.98);
        Assert.InRange(alpha, 0.3, 0.95);
    }
}

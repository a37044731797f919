using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>
/// The slot signature (<see cref="KvLayout.Slots"/>) against Optimum's on the same weights, token trees in one pass
/// against their paths fed as chains, and the KV pool (in-place passes, slot reuse, in-slot path compaction).
/// </summary>
[Collection(TinyPairCollection.Name)]
public sealed class SlotEngineTests(TinyPairFixture pair) : IDisposable
{
    private const float Tolerance = 2e-4f;
    private readonly string _legacyPath = Path.Combine(Path.GetTempPath(), $"iotdsd-legacy-{Guid.NewGuid():N}.onnx");

    private static int[] Text(string s) => ByteTokenizer.Instance.Encode(s);

    internal static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, float tolerance = Tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tolerance, $"{what}: max |difference| {worst} > {tolerance}");
    }

    private TransformerModel Legacy()
    {
        // The same tiny target as Optimum's signature (attention_mask, every position's logits, present = past + new).
        if (!File.Exists(_legacyPath))
        {
            var config = TransformerConfig.ForPreset("tiny", "target", TinyPairFixture.Seed);
            File.WriteAllBytes(_legacyPath, TransformerGraph.Build(config, DefaultModels.Corpus.Span, null, slots: false));
        }
        return TransformerModel.Open(_legacyPath, "legacy", null, 1024);
    }

    [Fact]
    public void SlotGraph_EqualsOptimumGraph_OnTheSameWeights_FeedsAndRaggedBatches()
    {
        using var legacy = Legacy();
        using var slots = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        Assert.Equal(KvLayout.Concat, legacy.Layout);
        Assert.Equal(KvLayout.Slots, slots.Layout);
        int v = slots.VocabSize;
        string[] prefixes = ["Q: Why", "A longer prefix than the others in this batch", "", "x"];
        string[] chunks = [" did the chicken", "!", "A fresh sequence", " marks the spot"];
        var a = prefixes.Select(_ => legacy.CreateSequence()).ToArray();
        var b = prefixes.Select(_ => slots.CreateSequence()).ToArray();
        try
        {
            var ra = new List<FeedRequest>();
            var rb = new List<FeedRequest>();
            for (int i = 0; i < prefixes.Length; i++)
            {
                var p = Text(prefixes[i]);
                var pa = new float[p.Length * v];
                var pb = new float[p.Length * v];
                a[i].Feed(p, pa);
                b[i].Feed(p, pb);
                AssertClose(pa, pb, $"prefix {i}, every row");
                var c = Text(chunks[i]);
                ra.Add(new FeedRequest(a[i], c, new float[c.Length * v]));
                rb.Add(new FeedRequest(b[i], c, new float[c.Length * v]));
            }
            legacy.FeedBatch(ra);
            slots.FeedBatch(rb);
            for (int i = 0; i < prefixes.Length; i++)
            {
                AssertClose(ra[i].Logits.Span, rb[i].Logits.Span, $"batched row {i}");
                Assert.Equal(a[i].Length, b[i].Length);
            }
        }
        finally
        {
            foreach (var s in a) s.Dispose();
            foreach (var s in b) s.Dispose();
        }
    }

    [Fact]
    public void FeedTree_EveryNodeRow_EqualsItsPathFedAsAChain_ThenKeepPathContinuesLikeTheChain()
    {
        using var model = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        var prefix = Text("The cat sat on");
        // Two roots; node 2 branches under node 0; 4 and 5 are siblings under 3.
        int[] tree = Text(" the mat").Take(6).ToArray();
        int[] parents = [-1, 0, 0, -1, 3, 3];
        TreeRowsEqualPaths(model, prefix, tree, parents);
    }

    internal static void TreeRowsEqualPaths(ILanguageModel model, int[] prefix, int[] tree, int[] parents, float tolerance = Tolerance)
    {
        int v = model.VocabSize;
        using var seq = model.CreateSequence();
        seq.Feed(prefix, []);
        var rows = new float[tree.Length * v];
        seq.FeedTree(tree, parents, rows, tree.Length);
        for (int node = 0; node < tree.Length; node++)
        {
            var path = TokenTree.PathTo(parents, node);
            using var chain = model.CreateSequence();
            var expected = new float[v];
            chain.Feed([.. prefix, .. path.Select(n => tree[n])], expected);
            AssertClose(expected, rows.AsSpan(node * v, v), $"node {node} (path {string.Join(',', path)})", tolerance);
        }

        // Keep the deepest path through the last node; the sequence then continues exactly as the chain would.
        var kept = TokenTree.PathTo(parents, tree.Length - 1);
        seq.KeepPath(prefix.Length, tree, kept);
        Assert.Equal(prefix.Length + kept.Length, seq.Length);
        int[] next = [tree[0], tree[^1]];
        var after = new float[next.Length * v];
        seq.Feed(next, after);
        using var reference = model.CreateSequence();
        var expectedAfter = new float[next.Length * v];
        reference.Feed([.. prefix, .. kept.Select(n => tree[n])], []);
        reference.Feed(next, expectedAfter);
        AssertClose(expectedAfter, after, "after KeepPath", tolerance);
    }

    [Fact]
    public void FeedTreeBatch_MixedTreesAndChains_EqualsEachAlone()
    {
        using var model = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        int v = model.VocabSize;
        var prefixes = new[] { Text("Alpha beta"), Text("A much longer prefix for the second row"), Text("z") };
        var tokens = new[] { Text("gamma"), Text(" row"), Text("qrs") };
        var parents = new[] { new[] { -1, 0, 0, 1, -1 }, Array.Empty<int>(), new[] { -1, -1, 1 } };
        var batched = new IModelSequence[3];
        var alone = new IModelSequence[3];
        try
        {
            var requests = new List<FeedRequest>();
            for (int i = 0; i < 3; i++)
            {
                batched[i] = model.CreateSequence();
                alone[i] = model.CreateSequence();
                batched[i].Feed(prefixes[i], []);
                alone[i].Feed(prefixes[i], []);
                requests.Add(new FeedRequest(batched[i], tokens[i], new float[tokens[i].Length * v]) { Parents = parents[i] });
            }
            long passes = PassCount(model);
            TokenTree.FeedBatch(model, requests);
            Assert.Equal(passes + 1, PassCount(model)); // trees and chains in one pass
            for (int i = 0; i < 3; i++)
            {
                var expected = new float[tokens[i].Length * v];
                if (parents[i].Length == 0) alone[i].Feed(tokens[i], expected);
                else TokenTree.FeedByPaths(alone[i], tokens[i], parents[i], expected, tokens[i].Length);
                AssertClose(expected, requests[i].Logits.Span, $"request {i}");
            }
        }
        finally
        {
            foreach (var s in batched) s?.Dispose();
            foreach (var s in alone) s?.Dispose();
        }
    }

    [Fact]
    public void Pool_SlotsAreReused_AndPassesReadThePoolInPlace()
    {
        using var model = (TransformerModel)ModelDirectory.Load(pair.TargetDir);
        int v = model.VocabSize;
        var first = model.CreateSequence();
        first.Feed(Text("first session"), new float[v]);
        var (bytes, slots, inUse, capacity) = model.KvPoolState;
        Assert.Equal(1, inUse);
        Assert.Equal((long)slots * capacity * model.CacheBytesPerToken, bytes);

        // Many verification passes within the capacity: the pool neither grows nor moves.
        var row = new float[5 * v];
        for (int i = 0; i < 10; i++)
        {
            first.Feed(Text("abcde"), row);
            first.Truncate(first.Length - 5);
        }
        Assert.Equal((bytes, slots, capacity), (model.KvPoolState.Bytes, model.KvPoolState.Slots, model.KvPoolState.Capacity));
        first.Dispose();
        Assert.Equal(0, model.KvPoolState.InUse);
        using var second = model.CreateSequence();
        second.Feed(Text("second"), new float[v]);
        Assert.Equal(1, model.KvPoolState.InUse);
        Assert.Equal(slots, model.KvPoolState.Slots); // the freed slot, not a new one
    }

    private static long PassCount(TransformerModel model) => model.SlotPasses;

    public void Dispose()
    {
        try { File.Delete(_legacyPath); } catch (IOException) { }
    }
}

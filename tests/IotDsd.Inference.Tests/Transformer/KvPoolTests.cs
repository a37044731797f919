using IotDsd.Core.Models;
using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>
/// Where the KV pool lives and how it is changed: the graph writes each pass's keys and values into the bound pool
/// itself, and growth, zeroing and tree compaction run as graphs on the model's provider (<see cref="KvPoolOps"/>). One
/// scenario (ragged prefixes, a prompt longer than a prefill pass, slot and capacity growth, a batched pass, a token
/// tree kept in place, a capacity shrink, truncation) is run on every variant and compared row by row.
/// </summary>
[Collection(TinyPairCollection.Name)]
public sealed class KvPoolTests(TinyPairFixture pair) : IDisposable
{
    private readonly string _oldSlotsPath = Path.Combine(Path.GetTempPath(), $"iotdsd-old-slots-{Guid.NewGuid():N}.onnx");

    private string TargetPath => Path.Combine(pair.TargetDir, TransformerModelBuilder.ModelFileName);

    private static int[] Text(string s) => ByteTokenizer.Instance.Encode(s);

    /// <summary>Every logits row the scenario produces, in order, and the pool's shape at its steps.</summary>
    internal static (List<float[]> Rows, List<(int Slots, int Capacity)> Shapes) Scenario(TransformerModel model)
    {
        int v = model.VocabSize;
        var rows = new List<float[]>();
        var shapes = new List<(int, int)>();
        string longPrompt = string.Concat(Enumerable.Repeat("A prompt longer than one prefill pass. ", 8)); // 312 tokens
        string[] prefixes = [longPrompt, "Q: Why", "", "A longer prefix than most", "x", "The cat sat on"];
        var seqs = new List<IModelSequence>();
        try
        {
            foreach (var p in prefixes)
            {
                var seq = model.CreateSequence();
                seqs.Add(seq);
                var tokens = Text(p.Length == 0 ? "?" : p);
                var last = new float[v];
                seq.Feed(tokens, last);
                rows.Add(last);
            }
            shapes.Add((model.KvPoolState.Slots, model.KvPoolState.Capacity));

            // One batched pass of ragged chains over every sequence.
            var batch = seqs.Select((s, i) => new FeedRequest(s, Text(i % 2 == 0 ? " and" : " or not"), new float[(i % 2 == 0 ? 4 : 7) * v])).ToList();
            model.FeedBatch(batch);
            rows.AddRange(batch.Select(r => r.Logits.ToArray()));

            // A token tree on one sequence, its path 0 → 2 → 3 kept in place, then one more token after it.
            var treeSeq = seqs[5];
            int start = treeSeq.Length;
            int[] tree = Text(" the mat").Take(5).ToArray();
            var treeRows = new float[tree.Length * v];
            treeSeq.FeedTree(tree, [-1, 0, 0, 2, -1], treeRows, tree.Length);
            rows.Add(treeRows);
            treeSeq.KeepPath(start, tree, [0, 2, 3]);
            var after = new float[v];
            treeSeq.Feed(Text("!"), after);
            rows.Add(after);

            // The long sequence goes: the capacity shrinks to what the others need; then a truncation and a refeed.
            seqs[0].Dispose();
            seqs.RemoveAt(0);
            var next = seqs.Select(s => new FeedRequest(s, Text("."), new float[v])).ToList();
            model.FeedBatch(next);
            rows.AddRange(next.Select(r => r.Logits.ToArray()));
            shapes.Add((model.KvPoolState.Slots, model.KvPoolState.Capacity));
            seqs[2].Truncate(seqs[2].Length - 3);
            var refeed = new float[2 * v];
            seqs[2].Feed(Text("ed"), refeed);
            rows.Add(refeed);
        }
        finally
        {
            foreach (var s in seqs) s.Dispose();
        }
        return (rows, shapes);
    }

    private static void AssertSameRows(List<float[]> expected, List<float[]> actual, string what, float tolerance)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) SlotEngineTests.AssertClose(expected[i], actual[i], $"{what}, step {i}", tolerance);
    }

    [Fact]
    public void Scenario_GrowsAndShrinksThePool_AndEqualsOptimumsGraph()
    {
        using var model = TransformerModel.Open(TargetPath, "host", null, 1024);
        var (rows, shapes) = Scenario(model);
        Assert.Equal((8, 320), shapes[0]);  // 6 sequences past 4 slots; 312 + 7 positions
        Assert.Equal((8, 64), shapes[1]);   // the long one gone: a pass no longer attends over 320 positions
        Assert.Equal(0, model.KvPoolState.InUse);

        // The same weights in Optimum's signature (every sequence its own padded cache, no pool at all).
        var legacyPath = _oldSlotsPath + ".optimum.onnx";
        File.WriteAllBytes(legacyPath, TransformerGraph.Build(TransformerConfig.ForPreset("tiny", "target", TinyPairFixture.Seed), DefaultModels.Corpus.Span, null, slots: false));
        try
        {
            using var optimum = TransformerModel.Open(legacyPath, "optimum", null, 1024);
            Assert.Equal(KvLayout.Concat, optimum.Layout);
            var reference = Scenario(optimum).Rows;
            AssertSameRows(reference, rows, "slot pool against Optimum's graph", 2e-4f);
        }
        finally
        {
            File.Delete(legacyPath);
        }
    }

    [Fact]
    public void PoolFromTheSessionAllocator_TheDevicePath_GivesTheHostPoolsRowsExactly()
    {
        using var host = TransformerModel.Open(TargetPath, "host", null, 1024);
        using var allocated = TransformerModel.Open(TargetPath, "allocated", new InferenceOptions { KvThroughAllocator = true }, 1024);
        Assert.Equal(("host", false), (host.KvPlace, host.KvPoolFromAllocator));
        Assert.Equal(("host", true), (allocated.KvPlace, allocated.KvPoolFromAllocator));
        var expected = Scenario(host);
        var actual = Scenario(allocated);
        Assert.Equal(expected.Shapes, actual.Shapes);
        // The same graphs over memory the host never touches: zeroed, grown, written and compacted by the pool's graphs.
        AssertSameRows(expected.Rows, actual.Rows, "pool from the session's allocator", 0f);
    }

    [Fact]
    public void SlotGraphOfEarlierBuilds_PresentHoldsNewRowsOnly_IsWrittenByThePoolsGraph_AndGivesTheSameRows()
    {
        File.WriteAllBytes(_oldSlotsPath, TransformerGraph.Build(TransformerConfig.ForPreset("tiny", "target", TinyPairFixture.Seed),
            DefaultModels.Corpus.Span, null, slots: true, slotWrites: false));
        using var old = TransformerModel.Open(_oldSlotsPath, "old-slots", null, 1024);
        using var current = TransformerModel.Open(TargetPath, "current", null, 1024);
        Assert.Equal(KvLayout.Slots, old.Layout);
        Assert.Null(old.Signature.KvWriteFrom);
        Assert.NotNull(current.Signature.KvWriteFrom);
        AssertSameRows(Scenario(current).Rows, Scenario(old).Rows, "slot graph without in-graph writes", 0f);

        // Its write graph's binding is cached with the pass's: a steady decode still allocates nothing.
        using var seq = old.CreateSequence();
        var row = new float[old.VocabSize];
        seq.Feed(Text("Warm up"), row);
        for (int i = 0; i < 3; i++) seq.Feed([IotDsd.Core.Sampling.Distribution.ArgMax(row)], row);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) seq.Feed([IotDsd.Core.Sampling.Distribution.ArgMax(row)], row); // within the 64-position capacity
        Assert.Equal(0, (GC.GetAllocatedBytesForCurrentThread() - before) / 20);
    }

    [Fact]
    public void SlotGraph_WithOneOfTheWriteInputs_IsRefusedNamingIt()
    {
        // A hand-edited graph: kv_write_from without kv_write_to.
        var g = new IotDsd.Inference.Onnx.OnnxGraphBuilder("half", opset: 17);
        g.AddInput("input_ids", IotDsd.Inference.Onnx.OnnxDataType.Int64, "b", "s");
        g.AddInput("position_ids", IotDsd.Inference.Onnx.OnnxDataType.Int64, "b", "s");
        SlotGraph.AddInputs(g, writes: false);
        g.AddInput(SlotGraph.KvWriteFrom, IotDsd.Inference.Onnx.OnnxDataType.Int64, "w");
        g.AddInput("past_key_values.0.key", IotDsd.Inference.Onnx.OnnxDataType.Float, "b", 2, "p", 4);
        g.AddInput("past_key_values.0.value", IotDsd.Inference.Onnx.OnnxDataType.Float, "b", 2, "p", 4);
        g.AddNode("Identity", ["past_key_values.0.key"], ["present.0.key"]);
        g.AddNode("Identity", ["past_key_values.0.value"], ["present.0.value"]);
        var logits = g.Op("Cast", ["logits_indices"], IotDsd.Inference.Onnx.OnnxAttribute.Int("to", 1));
        g.AddNode("Unsqueeze", [logits, g.Constant("axis", [1L], 1)], ["logits"]);
        g.AddOutput("logits", IotDsd.Inference.Onnx.OnnxDataType.Float, "r", 1);
        g.AddOutput("present.0.key", IotDsd.Inference.Onnx.OnnxDataType.Float, "b", 2, "p", 4);
        g.AddOutput("present.0.value", IotDsd.Inference.Onnx.OnnxDataType.Float, "b", 2, "p", 4);
        g.Save(_oldSlotsPath);
        var e = Assert.Throws<ModelLoadException>(() => TransformerModel.Open(_oldSlotsPath, "half", null, 16));
        Assert.Contains("'kv_write_from' and 'kv_write_to' without the other", e.Message);
    }

    /// <summary>
    /// The scenario on CUDA, the pool in GPU memory (zeroed, grown, written and compacted there), against the CPU.
    /// Runs where IOTDSD_PROVIDER_LIBRARY names the CUDA provider library (a GPU host); skipped elsewhere.
    /// </summary>
    [SkippableFact]
    public void Scenario_OnCuda_PoolInDeviceMemory_EqualsCpu()
    {
        var library = Environment.GetEnvironmentVariable(ExecutionProviders.LibraryEnvironmentVariable);
        Skip.If(string.IsNullOrEmpty(library), "no CUDA provider library configured (IOTDSD_PROVIDER_LIBRARY): this machine has no GPU");
        using var cuda = TransformerModel.Open(TargetPath, "cuda", new InferenceOptions { Provider = ExecutionProviderKind.Cuda, ProviderLibrary = library }, 1024);
        using var cpu = TransformerModel.Open(TargetPath, "cpu", null, 1024);
        Assert.Equal(("device", true), (cuda.KvPlace, cuda.KvPoolFromAllocator));
        var expected = Scenario(cpu);
        var actual = Scenario(cuda);
        Assert.Equal(expected.Shapes, actual.Shapes);
        AssertSameRows(expected.Rows, actual.Rows, "CUDA against CPU", 1e-3f);
    }

    public void Dispose()
    {
        try { File.Delete(_oldSlotsPath); } catch (IOException) { }
    }
}

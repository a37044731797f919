using IotDsd.Core.Models;
using IotDsd.Inference.Llama;
using IotDsd.Inference.Models;
using IotDsd.Inference.Tests.Transformer;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Llama;

/// <summary>The stories260K import in the slot signature: trees in one pass, and the same logits as Optimum's signature.</summary>
public sealed class StoriesTreeTests(StoriesFixture stories) : IClassFixture<StoriesFixture>
{
    private const float Tolerance = 1e-3f;

    [Fact]
    public void Import_IsSlotSignature_TreeRowsEqualChainRowsOfEachPath()
    {
        var model = Assert.IsType<TransformerModel>(stories.Model);
        Assert.Equal(KvLayout.Slots, model.Layout);
        int[] prefix = [1, 403, 407, 261, 378];
        int[] tree = [263, 1165 % 512, 300, 400, 280, 290, 310];
        int[] parents = [-1, 0, 1, 0, -1, 4, 4];
        SlotEngineTests.TreeRowsEqualPaths(model, prefix, tree, parents, Tolerance);
    }

    [Fact]
    public void SlotGraph_EqualsOptimumGraph_OnStories260K()
    {
        var path = Path.Combine(stories.Root, "optimum.onnx");
        File.WriteAllBytes(path, LlamaGraph.Build(stories.Checkpoint, "stories-optimum", slots: false));
        using var legacy = TransformerModel.Open(path, "optimum", null, stories.Checkpoint.Shape.SeqLen);
        Assert.Equal(KvLayout.Concat, legacy.Layout);
        int v = legacy.VocabSize;
        int[] tokens = [1, 403, 407, 261, 378, 263, 300, 400, 280];
        var expected = new float[tokens.Length * v];
        var actual = new float[tokens.Length * v];
        using (var a = legacy.CreateSequence()) a.Feed(tokens, expected);
        using (var b = stories.Model.CreateSequence())
        {
            b.Feed(tokens[..4], actual.AsSpan(0, 4 * v));
            b.Feed(tokens[4..], actual.AsSpan(4 * v));
        }
        SlotEngineTests.AssertClose(expected, actual, "stories260K rows", Tolerance);
    }
}

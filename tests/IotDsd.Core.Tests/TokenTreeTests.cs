using IotDsd.Core.Models;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

public sealed class TokenTreeTests
{
    private static readonly TableModel Model = TableModel.CreatePair(vocab: 7, seed: 11, targetScale: 2, draftNoise: 1).Target;

    /// <summary>The row a chain feed gives after prefix + path.</summary>
    private static float[] ChainRow(int[] prefix, int[] path)
    {
        using var s = Model.CreateSequence();
        var row = new float[Model.VocabSize];
        s.Feed([.. prefix, .. path], row);
        return row;
    }

    [Fact]
    public void FeedByPaths_EveryRowIsItsPathsChainRow()
    {
        int[] prefix = [1, 2, 3];
        // pending chain 4, 5, then a tree: roots 6 and 0 after 5; 1 under 6; 2 and 3 under 1; 4 under 0.
        int[] tokens = [4, 5, 6, 0, 1, 2, 3, 4];
        int[] parents = [-1, 0, 1, 1, 2, 4, 4, 3];
        using var s = Model.CreateSequence();
        s.Feed(prefix, []);
        var rows = 7;
        var logits = new float[rows * Model.VocabSize];
        s.FeedTree(tokens, parents, logits, rows);
        for (var node = tokens.Length - rows; node < tokens.Length; node++)
        {
            var path = TokenTree.PathTo(parents, node).Select(i => tokens[i]).ToArray();
            var expected = ChainRow(prefix, path);
            Assert.Equal(expected, logits.AsSpan((node - (tokens.Length - rows)) * Model.VocabSize, Model.VocabSize).ToArray());
        }

        s.KeepPath(prefix.Length, tokens, [0, 1, 2, 4, 6]);
        Assert.Equal(prefix.Length + 5, s.Length);
        var next = new float[Model.VocabSize];
        s.Feed([5], next);
        Assert.Equal(ChainRow(prefix, [4, 5, 6, 1, 3, 5]), next);
    }

    [Fact]
    public void AChainTree_GivesFeedsRows()
    {
        int[] tokens = [3, 1, 4, 1, 5];
        using var a = Model.CreateSequence();
        using var b = Model.CreateSequence();
        var chain = new float[3 * Model.VocabSize];
        var tree = new float[3 * Model.VocabSize];
        a.Feed(tokens, chain);
        b.FeedTree(tokens, [-1, 0, 1, 2, 3], tree, 3);
        Assert.Equal(chain, tree);
    }

    [Theory]
    [InlineData(new[] { 0 }, "node 0 names parent 0")]
    [InlineData(new[] { -1, 2, 0 }, "node 1 names parent 2")]
    [InlineData(new[] { -2 }, "node 0 names parent -2")]
    public void Validate_RefusesParentsThatAreNotEarlierNodes(int[] parents, string reason)
    {
        Assert.StartsWith(reason, TokenTree.Validate(parents, parents.Length));
        Assert.Throws<ArgumentException>(() => Model.CreateSequence().FeedTree(new int[parents.Length], parents, [], 0));
    }
    [Fact]
    public void FeedBatch_TreesAndChainsTogether_GiveEachRequestsOwnRows()
    {
        int[] prefix = [1, 2, 3];
        // Two trees of different shapes and a chain in one batch; each must get what it gets fed alone.
        (int[] Tokens, int[] Parents, int Rows)[] requests =
        [
            ([4, 5, 6, 0, 1, 2, 3, 4], [-1, 0, 1, 1, 2, 4, 4, 3], 7),
            ([2, 6, 5, 1], [-1, 0, 0, 0], 4),
            ([3, 3, 1], [], 2),
        ];
        var sequences = requests.Select(_ => Model.CreateSequence()).ToArray();
        var alone = requests.Select(_ => Model.CreateSequence()).ToArray();
        var batch = new List<FeedRequest>();
        var expected = new List<float[]>();
        for (var i = 0; i < requests.Length; i++)
        {
            var (tokens, parents, rows) = requests[i];
            sequences[i].Feed(prefix, []);
            alone[i].Feed(prefix, []);
            var want = new float[rows * Model.VocabSize];
            if (parents.Length == 0) alone[i].Feed(tokens, want);
            else alone[i].FeedTree(tokens, parents, want, rows);
            expected.Add(want);
            batch.Add(new FeedRequest(sequences[i], tokens, new float[rows * Model.VocabSize]) { Parents = parents });
        }

        TokenTree.FeedBatch(Model, batch);
        for (var i = 0; i < requests.Length; i++)
        {
            Assert.Equal(expected[i], batch[i].Logits.ToArray());
        }

        // The tree caches keep a path as after a lone feed; the chain's cache holds prefix + chain.
        sequences[0].KeepPath(prefix.Length, requests[0].Tokens, [0, 1, 2, 4, 6]);
        var next = new float[Model.VocabSize];
        sequences[0].Feed([5], next);
        Assert.Equal(ChainRow(prefix, [4, 5, 6, 1, 3, 5]), next);
        Assert.Equal(prefix.Length + 3, sequences[2].Length);
        foreach (var s in sequences.Concat(alone)) s.Dispose();
    }
}

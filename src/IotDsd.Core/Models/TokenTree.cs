namespace IotDsd.Core.Models;

/// <summary>
/// Token trees fed to models that know only chains: each root-to-leaf path is fed in turn through
/// <see cref="IModelSequence.Truncate"/> and <see cref="IModelSequence.Feed"/>. Exact (each row sees exactly its
/// path) and model-agnostic; a model with a tree attention mask does it in one pass (<see cref="ITreeBatchModel"/>).
/// </summary>
public static class TokenTree
{
    /// <summary>
    /// Checks a parent array: one entry per token, each −1 or an earlier index. Returns null when valid, else the reason.
    /// </summary>
    public static string? Validate(ReadOnlySpan<int> parents, int tokens)
    {
        if (parents.Length != tokens)
        {
            return $"the tree has {parents.Length} parents for {tokens} tokens";
        }

        for (var i = 0; i < parents.Length; i++)
        {
            if (parents[i] < -1 || parents[i] >= i)
            {
                return $"node {i} names parent {parents[i]}; a parent must be an earlier node or -1";
            }
        }

        return null;
    }

    /// <summary>Depth of every node: 1 for a root.</summary>
    public static int[] Depths(ReadOnlySpan<int> parents)
    {
        var depth = new int[parents.Length];
        for (var i = 0; i < parents.Length; i++)
        {
            depth[i] = parents[i] < 0 ? 1 : depth[parents[i]] + 1;
        }

        return depth;
    }

    /// <summary>The nodes from a root down to <paramref name="node"/>, in order.</summary>
    public static int[] PathTo(ReadOnlySpan<int> parents, int node)
    {
        var length = 0;
        for (var n = node; n >= 0; n = parents[n]) length++;
        var path = new int[length];
        for (var n = node; n >= 0; n = parents[n]) path[--length] = n;
        return path;
    }

    /// <summary>
    /// Feeds a batch in which some requests may be trees: the model's own tree pass when it has one, otherwise the
    /// chains in one <see cref="ILanguageModel.FeedBatch"/> and each tree through <see cref="IModelSequence.FeedTree"/>.
    /// </summary>
    public static void FeedBatch(ILanguageModel model, IReadOnlyList<FeedRequest> batch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        var trees = 0;
        foreach (var r in batch)
        {
            if (r.IsTree) trees++;
        }

        if (trees == 0)
        {
            model.FeedBatch(batch);
            return;
        }

        if (model is ITreeBatchModel native)
        {
            native.FeedTreeBatch(batch);
            return;
        }

        var chains = new List<FeedRequest>(batch.Count - trees);
        foreach (var r in batch)
        {
            if (!r.IsTree) chains.Add(r);
        }

        if (chains.Count > 0) model.FeedBatch(chains);
        foreach (var r in batch)
        {
            if (!r.IsTree) continue;
            var rows = r.Logits.Length / model.VocabSize;
            r.Sequence.FeedTree(r.Tokens.Span, r.Parents.Span, r.Logits.Span, rows);
        }
    }

    /// <summary>The default <see cref="IModelSequence.FeedTree"/>: every root-to-leaf path in turn.</summary>
    public static void FeedByPaths(IModelSequence sequence, ReadOnlySpan<int> tokens, ReadOnlySpan<int> parents, Span<float> logits, int rows)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (Validate(parents, tokens.Length) is { } bad) throw new ArgumentException(bad, nameof(parents));
        if (rows < 0 || rows > tokens.Length || (rows == 0 ? logits.Length != 0 : logits.Length % rows != 0))
        {
            throw new ArgumentException($"{logits.Length} logits do not hold {rows} rows for {tokens.Length} tokens", nameof(logits));
        }

        if (tokens.IsEmpty) return;
        var width = rows == 0 ? 0 : logits.Length / rows;
        var firstRow = tokens.Length - rows;
        var start = sequence.Length;
        var hasChild = new bool[tokens.Length];
        foreach (var p in parents)
        {
            if (p >= 0) hasChild[p] = true;
        }

        var current = Array.Empty<int>(); // the nodes the cache holds after start
        var scratch = Array.Empty<float>();
        var fed = new int[tokens.Length];
        for (var leaf = 0; leaf < tokens.Length; leaf++)
        {
            if (hasChild[leaf]) continue;
            var path = PathTo(parents, leaf);
            var common = 0;
            while (common < current.Length && common < path.Length && current[common] == path[common]) common++;
            sequence.Truncate(start + common);
            var count = path.Length - common;
            for (var i = 0; i < count; i++) fed[i] = tokens[path[common + i]];

            // Rows only from the first node on this stretch that wants one.
            var from = 0;
            while (from < count && path[common + from] < firstRow) from++;
            var want = count - from;
            if (want * width > scratch.Length) scratch = new float[want * width];
            sequence.Feed(fed.AsSpan(0, count), scratch.AsSpan(0, want * width));
            for (var i = 0; i < want; i++)
            {
                var node = path[common + from + i];
                scratch.AsSpan(i * width, width).CopyTo(logits.Slice((node - firstRow) * width, width));
            }

            current = path;
        }
    }

    /// <summary>The default <see cref="IModelSequence.KeepPath"/>: truncate to the tree's start and feed the kept tokens.</summary>
    public static void KeepByRefeeding(IModelSequence sequence, int treeStart, ReadOnlySpan<int> treeTokens, ReadOnlySpan<int> nodes)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        var kept = new int[nodes.Length];
        for (var i = 0; i < nodes.Length; i++) kept[i] = treeTokens[nodes[i]];
        sequence.Truncate(treeStart);
        if (kept.Length > 0) sequence.Feed(kept, []);
    }
}

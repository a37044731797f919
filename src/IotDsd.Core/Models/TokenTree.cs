namespace IotDsd.Core.Models;

/// <summary>
/// Token trees fed to models that know only chains: each root-to-leaf path is fed in turn through
/// <see cref="IModelSequence.Truncate"/> and <see cref="IModelSequence.Feed"/>, and in a batch the paths of different
/// trees go together as batch rows. Exact (each row sees exactly its path) and model-agnostic; a model with a tree
/// attention mask does it in one pass (<see cref="ITreeBatchModel"/>).
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
    /// branches become batch rows — each tree's root-to-leaf paths are fed in turn (as <see cref="FeedByPaths"/> does),
    /// the k-th path of every tree together in one <see cref="ILanguageModel.FeedBatch"/>, the chains with the first.
    /// Exact: each row sees exactly its path. The model is called as many times as the bushiest tree has leaves.
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

        var plans = new List<PathPlan>(trees);
        var requests = new List<FeedRequest>(batch.Count);
        foreach (var r in batch)
        {
            if (r.IsTree) plans.Add(new PathPlan(r, model.VocabSize));
            else requests.Add(r);
        }

        for (var step = 0; ; step++)
        {
            var active = 0;
            foreach (var plan in plans)
            {
                if (step >= plan.Steps) continue;
                active++;
                if (plan.Begin(step) is { } request) requests.Add(request);
            }

            if (active == 0 && requests.Count == 0) break;
            if (requests.Count > 0) model.FeedBatch(requests);
            foreach (var plan in plans)
            {
                if (step < plan.Steps) plan.End(step);
            }

            requests.Clear();
        }
    }

    /// <summary>One tree fed path by path: the stretch each leaf adds after what the cache already holds.</summary>
    private sealed class PathPlan
    {
        private readonly FeedRequest _request;
        private readonly int _width;
        private readonly int _firstRow;
        private readonly int _start;
        private readonly List<int[]> _paths = [];
        private readonly List<int> _common = [];
        private float[] _scratch = [];
        private int[] _fed = [];
        private int _from;
        private int _count;

        public PathPlan(FeedRequest request, int vocab)
        {
            var tokens = request.Tokens.Span;
            var parents = request.Parents.Span;
            if (Validate(parents, tokens.Length) is { } bad) throw new ArgumentException(bad, nameof(request));
            var rows = request.Logits.Length / vocab;
            if (request.Logits.Length % vocab != 0 || rows > tokens.Length)
            {
                throw new ArgumentException($"{request.Logits.Length} logits do not hold whole rows for {tokens.Length} tokens", nameof(request));
            }

            _request = request;
            _width = vocab;
            _firstRow = tokens.Length - rows;
            _start = request.Sequence.Length;
            var hasChild = new bool[tokens.Length];
            foreach (var p in parents)
            {
                if (p >= 0) hasChild[p] = true;
            }

            var current = Array.Empty<int>();
            for (var leaf = 0; leaf < tokens.Length; leaf++)
            {
                if (hasChild[leaf]) continue;
                var path = PathTo(parents, leaf);
                var common = 0;
                while (common < current.Length && common < path.Length && current[common] == path[common]) common++;
                _paths.Add(path);
                _common.Add(common);
                current = path;
            }
        }

        public int Steps => _paths.Count;

        /// <summary>Rolls the cache back to the path's common prefix and returns the chain request for the rest (null: fed here, no rows wanted).</summary>
        public FeedRequest? Begin(int step)
        {
            var path = _paths[step];
            var common = _common[step];
            var sequence = _request.Sequence;
            sequence.Truncate(_start + common);
            _count = path.Length - common;
            if (_fed.Length < _count) _fed = new int[_count];
            var tokens = _request.Tokens.Span;
            for (var i = 0; i < _count; i++) _fed[i] = tokens[path[common + i]];
            _from = 0;
            while (_from < _count && path[common + _from] < _firstRow) _from++;
            var want = _count - _from;
            if (want == 0)
            {
                sequence.Feed(_fed.AsSpan(0, _count), []);
                return null;
            }

            if (want * _width > _scratch.Length) _scratch = new float[want * _width];
            return new FeedRequest(sequence, _fed.AsMemory(0, _count), _scratch.AsMemory(0, want * _width));
        }

        /// <summary>Copies the rows of the stretch fed to where the request wants them.</summary>
        public void End(int step)
        {
            var path = _paths[step];
            var common = _common[step];
            var logits = _request.Logits.Span;
            for (var i = 0; i < _count - _from; i++)
            {
                var node = path[common + _from + i];
                _scratch.AsSpan(i * _width, _width).CopyTo(logits.Slice((node - _firstRow) * _width, _width));
            }
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

namespace IotDsd.Core.Models;

/// <summary>
/// A causal language model over a fixed vocabulary. Each generation keeps its own <see cref="IModelSequence"/>,
/// which holds whatever cache the model needs (token history for n-grams, KV cache for transformers).
/// </summary>
public interface ILanguageModel : IDisposable
{
    /// <summary>Human-readable name, for logs and summaries.</summary>
    string Name { get; }

    /// <summary>
    /// Bytes a sequence's cache holds per token fed: for a transformer its KV cache,
    /// <see cref="CacheShape.BytesPerToken"/>; for an n-gram model its token history. 0 when the model does not say.
    /// </summary>
    long CacheBytesPerToken => 0;

    /// <summary>Number of output classes; every logits row has this many entries.</summary>
    int VocabSize { get; }

    /// <summary>Starts an empty sequence.</summary>
    IModelSequence CreateSequence();

    /// <summary>
    /// Feeds several sequences in one forward pass where the model can. Each request's logits receive the rows of
    /// its last <c>Logits.Length / VocabSize</c> tokens, as <see cref="IModelSequence.Feed"/> does; the result equals
    /// calling <see cref="IModelSequence.Feed"/> on each.
    /// </summary>
    void FeedBatch(IReadOnlyList<FeedRequest> batch);
}

/// <summary>One sequence's share of a batched forward pass.</summary>
public readonly record struct FeedRequest(IModelSequence Sequence, ReadOnlyMemory<int> Tokens, Memory<float> Logits)
{
    /// <summary>
    /// Empty: <see cref="Tokens"/> are a chain. Otherwise one entry per token, the tokens form a tree (see
    /// <see cref="IModelSequence.FeedTree"/>), and the request goes through <see cref="TokenTree.FeedBatch"/>.
    /// </summary>
    public ReadOnlyMemory<int> Parents { get; init; }

    /// <summary>True when the tokens form a tree.</summary>
    public bool IsTree => !Parents.IsEmpty;
}

/// <summary>
/// A model that feeds token trees in its batched pass (a tree attention mask over the batch). Models without it get
/// <see cref="TokenTree.FeedBatch"/>'s fallback: each tree through <see cref="IModelSequence.FeedTree"/>.
/// </summary>
public interface ITreeBatchModel : ILanguageModel
{
    /// <summary>As <see cref="ILanguageModel.FeedBatch"/>, where any request may be a tree.</summary>
    void FeedTreeBatch(IReadOnlyList<FeedRequest> batch);
}

/// <summary>The state of one generation inside a model.</summary>
public interface IModelSequence : IDisposable
{
    /// <summary>Number of tokens fed so far.</summary>
    int Length { get; }

    /// <summary>
    /// Appends <paramref name="tokens"/> and writes logits rows for the last <c>logits.Length / VocabSize</c> of them:
    /// the row of token <c>i</c> is the model's prediction for the token that follows it. <paramref name="logits"/>
    /// holds a whole number of rows, at most <c>tokens.Length</c> (zero rows: just extend the cache).
    /// </summary>
    void Feed(ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>Rolls the sequence back to its first <paramref name="length"/> tokens, without recomputation.</summary>
    void Truncate(int length);

    /// <summary>
    /// Feeds tokens that form a tree after the cache: <paramref name="parents"/>[i] is the index of token i's parent
    /// among these tokens (less than i), or −1 when token i follows the cache's last token. Writes logits rows for the
    /// last <paramref name="rows"/> tokens, each row the prediction after the path from the cache through that token
    /// (a chain, every parent i − 1, gives exactly <see cref="Feed"/>'s rows). Afterwards the sequence holds some
    /// provisional state: call <see cref="KeepPath"/> before feeding it again.
    /// </summary>
    /// <remarks>The default feeds each root-to-leaf path in turn, sharing the common prefix of consecutive paths.</remarks>
    void FeedTree(ReadOnlySpan<int> tokens, ReadOnlySpan<int> parents, Span<float> logits, int rows) =>
        TokenTree.FeedByPaths(this, tokens, parents, logits, rows);

    /// <summary>
    /// After <see cref="FeedTree"/> of <paramref name="treeTokens"/> on a cache of <paramref name="treeStart"/> tokens,
    /// keeps the tokens at <paramref name="nodes"/> (a path from a root: ascending, each the parent of the next) and
    /// drops the rest, so <see cref="Length"/> becomes <paramref name="treeStart"/> + <paramref name="nodes"/>.Length.
    /// </summary>
    /// <remarks>The default truncates to <paramref name="treeStart"/> and feeds the kept tokens again.</remarks>
    void KeepPath(int treeStart, ReadOnlySpan<int> treeTokens, ReadOnlySpan<int> nodes) =>
        TokenTree.KeepByRefeeding(this, treeStart, treeTokens, nodes);
}

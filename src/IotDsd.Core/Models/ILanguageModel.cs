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
public readonly record struct FeedRequest(IModelSequence Sequence, ReadOnlyMemory<int> Tokens, Memory<float> Logits);

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
}

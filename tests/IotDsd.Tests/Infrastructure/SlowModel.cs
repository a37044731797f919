using IotDsd.Core.Models;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// The real model, with each batched forward pass taking at least <paramref name="perPass"/> longer: a stand-in for a
/// target whose passes cost milliseconds (a transformer), so a verifier-decoded stream spreads over many chunks.
/// </summary>
public sealed class SlowModel(ILanguageModel inner, TimeSpan perPass) : ILanguageModel
{
    public string Name => inner.Name;
    public int VocabSize => inner.VocabSize;
    public long CacheBytesPerToken => inner.CacheBytesPerToken;

    public IModelSequence CreateSequence() => inner.CreateSequence();

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        Thread.Sleep(perPass);
        inner.FeedBatch(batch);
    }

    public void Dispose()
    {
    }
}

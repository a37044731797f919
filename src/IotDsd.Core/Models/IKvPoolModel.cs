namespace IotDsd.Core.Models;

/// <summary>
/// A model whose sequences share one KV pool in which every slot is as long as the longest live sequence, so that
/// what the pool holds is not the sum of the sequences' tokens: a KV budget asks the model instead.
/// </summary>
public interface IKvPoolModel : ILanguageModel
{
    /// <summary>
    /// Positions (slots × positions per slot) the pool would hold with <paramref name="sequences"/> live sequences, the
    /// longest <paramref name="longest"/> tokens long; null when this model keeps a cache per sequence after all.
    /// </summary>
    long? KvPoolPositions(int sequences, long longest);

    /// <summary>Bytes the pool has allocated now (host or GPU memory); 0 without one.</summary>
    long KvPoolBytes { get; }
}

namespace IotDsd.Core.Models;

/// <summary>The size of a transformer's KV cache, from its shape.</summary>
public static class CacheShape
{
    /// <summary>
    /// Bytes of KV cache per token: a key and a value row in every layer, each <paramref name="kvHeads"/> ×
    /// <paramref name="headDim"/> elements of <paramref name="elementBytes"/> bytes (GPT-2 small in fp32:
    /// 12 × 2 × 12 × 64 × 4 = 73,728 B).
    /// </summary>
    public static long BytesPerToken(int layers, int kvHeads, int headDim, int elementBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(elementBytes);
        return (long)layers * 2 * kvHeads * headDim * elementBytes;
    }
}

namespace IotDsd.Verifier.Hosting;

/// <summary>Counters of one verifier, readable while it runs.</summary>
public sealed class VerifierStats
{
    private long _rounds;
    private long _batches;
    private long _batchedRounds;
    private long _duplicates;
    private long _maxBatch;

    public long Rounds => Interlocked.Read(ref _rounds);
    public long Batches => Interlocked.Read(ref _batches);
    public long Duplicates => Interlocked.Read(ref _duplicates);
    public long MaxBatch => Interlocked.Read(ref _maxBatch);
    public double MeanBatch => Batches == 0 ? 0 : (double)Interlocked.Read(ref _batchedRounds) / Batches;

    public void Batch(int size)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batchedRounds, size);
        Interlocked.Add(ref _rounds, size);
        long current;
        while (size > (current = Interlocked.Read(ref _maxBatch)) && Interlocked.CompareExchange(ref _maxBatch, size, current) != current)
        {
        }
    }

    public void Duplicate() => Interlocked.Increment(ref _duplicates);
}

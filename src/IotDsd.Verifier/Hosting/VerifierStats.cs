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

    private long _drafted;
    private long _accepted;

    /// <summary>Draft tokens verified and accepted so far; each verified round also commits one token of the target's.</summary>
    public long Drafted => Interlocked.Read(ref _drafted);
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Tokens committed by verified rounds: the accepted drafts plus the correction or bonus token of each.</summary>
    public long Committed => Accepted + Rounds;

    public void Verified(int drafted, int accepted)
    {
        Interlocked.Add(ref _drafted, drafted);
        Interlocked.Add(ref _accepted, accepted);
    }
}

namespace IotDsd.Edge.Resilience;

/// <summary>What faults cost one generation: retried requests, link drops, recoveries and failovers, with times.</summary>
public sealed class FaultStats
{
    private readonly Lock _lock = new();
    private readonly List<double> _recoveryMillis = [];
    private readonly List<double> _failoverMillis = [];
    private long _retries;
    private long _linkDrops;
    private long _unverified;
    private long? _failoverStartedAt;

    /// <summary>Requests sent again (timeouts, failed sends, replays after a reconnect).</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Times the MQTT link dropped during the generation.</summary>
    public long LinkDrops => Interlocked.Read(ref _linkDrops);

    /// <summary>Draft-only tokens shown, flagged unverified, while the link was down (never committed).</summary>
    public long UnverifiedTokens => Interlocked.Read(ref _unverified);

    /// <summary>Per reconnect: from the link being back to the next committed round.</summary>
    public IReadOnlyList<double> RecoveryMillis
    {
        get
        {
            lock (_lock)
            {
                return [.. _recoveryMillis];
            }
        }
    }

    /// <summary>Per failover: from the last reply of the old verifier to the first committed round on the new one.</summary>
    public IReadOnlyList<double> FailoverMillis
    {
        get
        {
            lock (_lock)
            {
                return [.. _failoverMillis];
            }
        }
    }

    internal long? FailoverStartedAt
    {
        get
        {
            lock (_lock)
            {
                return _failoverStartedAt;
            }
        }
    }

    internal void Retry() => Interlocked.Increment(ref _retries);

    internal void LinkDrop() => Interlocked.Increment(ref _linkDrops);

    internal void Unverified(int count) => Interlocked.Add(ref _unverified, count);

    internal void Recovered(TimeSpan elapsed)
    {
        lock (_lock)
        {
            _recoveryMillis.Add(elapsed.TotalMilliseconds);
        }
    }

    internal void StartFailover(long lastReplyTimestamp)
    {
        lock (_lock)
        {
            _failoverStartedAt ??= lastReplyTimestamp;
        }
    }

    internal void CancelFailover()
    {
        lock (_lock)
        {
            _failoverStartedAt = null;
        }
    }

    internal void FailedOver(TimeSpan elapsed)
    {
        lock (_lock)
        {
            _failoverMillis.Add(elapsed.TotalMilliseconds);
            _failoverStartedAt = null;
        }
    }
}

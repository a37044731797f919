namespace IotDsd.Sim.Engine;

/// <summary>One simulated device: its link, the round in flight and its counters.</summary>
internal sealed class DeviceSim
{
    public int Verifier;
    public double OutagePhase;
    public LinkState Up;
    public LinkState Down;
    public IotDsd.Core.Adaptive.ShapeController? Adaptive;

    // The request and round in flight.
    public int Generated;
    public int Produced;
    public int Requests;
    public bool First;
    public bool GotFirst;
    public int Gamma;
    public int Accepted;
    public int Proposals;
    public bool FollowUp;
    public double RequestStart;
    public double RoundStart;
    public double DraftMs;
    public double VerifyMs;
    public int BatchSize;
    public double SpecReadyAt = double.NaN;

    // Counters.
    public long Rounds;
    public long Drafted;
    public long AcceptedTotal;
    public long UpPayload;
    public long DownPayload;
    public long UpWire;
    public long DownWire;
    public long FollowUps;
    public long PipelineHits;
    public long Tokens;
    public double RequestMs;
    public double TtftMs;
}

/// <summary>One simulated verifier: its queue, its batch in progress and its counters.</summary>
internal sealed class VerifierSim
{
    public readonly Queue<int> Queue = new();
    public readonly List<int> Batch = [];
    public bool Busy;
    public bool Waiting;
    public int Active;
    public double BusyMs;
    public long Batches;
    public long BatchedRounds;
}

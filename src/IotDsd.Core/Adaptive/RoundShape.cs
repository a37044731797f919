namespace IotDsd.Core.Adaptive;

/// <summary>
/// The shape of one speculative round: a chain of <see cref="Depth"/> drafts (<see cref="Width"/> 1), or a token tree
/// of at most <see cref="Nodes"/> drafts, at most <see cref="Width"/> children per node and <see cref="Depth"/> levels;
/// and how many rounds the device may send ahead of a pending verdict (<see cref="Pipeline"/>, 0 or more).
/// </summary>
public readonly record struct RoundShape(int Depth, int Width, int Nodes, int Pipeline)
{
    /// <summary>A chain of γ drafts, one round in flight: the sequential shape.</summary>
    public static RoundShape Chain(int gamma) => new(gamma, 1, gamma, 0);

    /// <summary>True when the round may branch.</summary>
    public bool IsTree => Width > 1 && Nodes > Depth;

    /// <summary>The same shape no deeper than <paramref name="maxDepth"/> (its node budget shrunk to match).</summary>
    public RoundShape Capped(int maxDepth)
    {
        var depth = Math.Clamp(Depth, 0, Math.Max(0, maxDepth));
        return this with { Depth = depth, Nodes = depth == 0 ? 0 : Math.Clamp(Nodes, depth, Math.Max(depth, Nodes)) };
    }

    public override string ToString() => IsTree ? $"tree {Nodes}n d{Depth} w{Width} p{Pipeline}" : $"chain {Depth} p{Pipeline}";
}

/// <summary>What a device saw of one round, for <see cref="IRoundShaper.Observe"/>.</summary>
/// <param name="Shape">The shape the round was drafted with.</param>
/// <param name="Drafted">Draft nodes it carried.</param>
/// <param name="Accepted">Drafts the verdict accepted (the accepted path's depth).</param>
/// <param name="Ranks">
/// Greedy: for each depth from 1 to <paramref name="Accepted"/> + 1, the rank (0 = the draft's most likely) of the
/// committed token among the draft's candidates at that depth, or −1 when the draft did not rank it (sampling, or past
/// the drafted depth). Empty when unknown.
/// </param>
/// <param name="DraftMs">Device time spent drafting the round.</param>
/// <param name="VerifyMs">The verifier's batch time for the round (from the verdict).</param>
/// <param name="RoundTripMs">Send to verdict, as the device measured it.</param>
/// <param name="BatchSize">Sessions in the verifier's pass.</param>
/// <param name="Pipelined">The round was sent ahead of its predecessor's verdict.</param>
/// <param name="ConditionHeld">For a pipelined round: its predicted prefix came true and it was verified.</param>
/// <param name="Streamed">For a streamed round (depth 0, the verifier decoding): the tokens it committed; its
/// <paramref name="RoundTripMs"/> is the whole round and <paramref name="BatchSize"/> the passes' mean batch.</param>
/// <param name="PassTokens">Tokens the verifier's pass fed, all sessions together; 0 when the verifier does not say.</param>
/// <param name="QueueDepth">Requests waiting at the verifier when its pass ended (the verdict's): sessions competing
/// for the next pass besides those in this one.</param>
/// <param name="PassFixedMs">The verifier's pass cost line (<see cref="PassCost"/>), fixed part, ms; with
/// <paramref name="PassPerTokenMs"/> 0 when the verifier does not send it.</param>
/// <param name="PassPerTokenMs">The verifier's pass cost line, part per token fed, ms.</param>
public readonly record struct RoundObservation(
    RoundShape Shape,
    int Drafted,
    int Accepted,
    ReadOnlyMemory<int> Ranks,
    double DraftMs,
    double VerifyMs,
    double RoundTripMs,
    int BatchSize,
    bool Pipelined = false,
    bool ConditionHeld = false,
    int Streamed = 0,
    int PassTokens = 0,
    int QueueDepth = 0,
    double PassFixedMs = 0,
    double PassPerTokenMs = 0);

/// <summary>Chooses each round's shape (docs/protocol.md §6). No I/O and no clock: the caller measures.</summary>
public interface IRoundShaper
{
    /// <summary>The shape of the next round, no deeper than <paramref name="maxDepth"/> (the ladder's and the link's cap).</summary>
    RoundShape Next(int maxDepth);

    /// <summary>Learns from a finished round.</summary>
    void Observe(in RoundObservation observation);

    /// <summary>
    /// Before the first round: the load the verifier reported when it opened the session (<paramref name="sessions"/>
    /// sharing it, and its pass cost line, 0 and 0 when it has none yet). Shapers that do not price the verifier ignore it.
    /// </summary>
    void Prime(int sessions, double passFixedMs, double passPerTokenMs)
    {
    }
}

/// <summary>One fixed shape every round: <c>--sequential</c> (a chain of γ, one round in flight) and pinned shapes.</summary>
public sealed class FixedShape(RoundShape shape) : IRoundShaper
{
    public RoundShape Shape { get; } = shape;

    public RoundShape Next(int maxDepth) => Shape.Capped(maxDepth);

    public void Observe(in RoundObservation observation)
    {
    }
}

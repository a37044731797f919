using IotDsd.Contracts.Messages;

namespace IotDsd.Core.Speculative;

/// <summary>The verifier's decision for one round, before it is put on the wire.</summary>
public sealed class RoundOutcome
{
    /// <summary>Accepted draft tokens, 0..γ.</summary>
    public int Accepted { get; init; }

    /// <summary>What follows the accepted tokens.</summary>
    public VerdictKind Kind { get; init; }

    /// <summary>The next token when <see cref="Kind"/> is <see cref="VerdictKind.Token"/>.</summary>
    public int Token { get; init; }

    /// <summary>P_j at the rejected position (kept for dssd replies and rsr follow-ups).</summary>
    public float[]? TargetRow { get; init; }

    /// <summary>rsr: proposed tokens drawn i.i.d. from P_j.</summary>
    public int[]? ProposalTokens { get; init; }

    /// <summary>rsr: P_j of each proposal.</summary>
    public float[]? ProposalProbs { get; init; }
}

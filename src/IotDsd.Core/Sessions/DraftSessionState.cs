namespace IotDsd.Core.Sessions;

/// <summary>
/// The part of a <see cref="DraftSession"/> that must survive a process restart for the generation to resume and
/// produce the same text: every committed token, the round and epoch, and the counters that steer later rounds
/// (the rsr proposal budget is computed from the proposal counts).
/// </summary>
public sealed record DraftSessionState
{
    public string SessionId { get; init; } = "";
    public int[] Committed { get; init; } = [];
    public int PromptLength { get; init; }
    public long Round { get; init; }
    public int Epoch { get; init; }
    public long Rounds { get; init; }
    public long Drafted { get; init; }
    public long Accepted { get; init; }
    public long ProposalsExamined { get; init; }
    public long ProposalsAccepted { get; init; }
    public long FollowUps { get; init; }
}

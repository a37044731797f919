using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Calibration;

/// <summary>The raw facts of one real generation, as its report holds them.</summary>
public sealed record RunFacts
{
    public required string Source { get; init; }
    public required string Mode { get; init; }
    public int Gamma { get; init; }
    public int Vocab { get; init; }
    public int PromptTokens { get; init; }
    public required IReadOnlyList<int> Tokens { get; init; }
    public string SessionId { get; init; } = "";
    public double ElapsedMs { get; init; }
    public long FollowUps { get; init; }
    public long UplinkPayloadBytes { get; init; }
    public long UplinkWireBytes { get; init; }
    public long DownlinkPayloadBytes { get; init; }
    public long DownlinkWireBytes { get; init; }
    public double MeanBatch { get; init; }
    public double LinkRttMs { get; init; }
    public required IReadOnlyList<double> RoundMillis { get; init; }
    public required IReadOnlyList<double> DraftMillis { get; init; }
    public required IReadOnlyList<double> VerifyMillis { get; init; }
    public required IReadOnlyList<int> AcceptedPerRound { get; init; }
    public required IReadOnlyList<int> DraftedPerRound { get; init; }
}

/// <summary>Turns the facts of a real run into a <see cref="Calibration"/>, and a calibration into a scenario.</summary>
public static class Calibrator
{
    /// <summary>Derives the calibration; throws <see cref="ArgumentException"/> when the run has no rounds to learn from.</summary>
    public static Calibration FromRun(RunFacts run)
    {
        var rounds = run.AcceptedPerRound.Count;
        if (rounds == 0 || run.DraftedPerRound.Count != rounds || run.RoundMillis.Count != rounds || run.Tokens.Count == 0)
        {
            throw new ArgumentException("the run has no complete rounds to calibrate from", nameof(run));
        }

        // Acceptance by position: of the rounds that reached position i, the share that accepted it.
        var tried = new long[run.Gamma + 1];
        var taken = new long[run.Gamma + 1];
        long rejections = 0;
        for (var r = 0; r < rounds; r++)
        {
            var g = run.DraftedPerRound[r];
            var k = run.AcceptedPerRound[r];
            rejections += k < g ? 1 : 0;
            for (var i = 1; i <= Math.Min(g, run.Gamma) && i <= k + 1; i++)
            {
                tried[i]++;
                taken[i] += i <= k ? 1 : 0;
            }
        }

        var byPosition = new List<double>();
        for (var i = 1; i <= run.Gamma && tried[i] > 0; i++)
        {
            byPosition.Add(Math.Round((double)taken[i] / tried[i], 4));
        }

        var drafted = run.DraftedPerRound.Sum();
        var draftPerToken = drafted == 0 ? 0 : run.DraftMillis.Sum() / drafted;
        var verify = run.VerifyMillis.Average();
        var overhead = Enumerable.Range(0, rounds).Average(r => run.RoundMillis[r] - run.DraftMillis[Math.Min(r, run.DraftMillis.Count - 1)] - run.VerifyMillis[r]) - run.LinkRttMs;
        var messages = rounds + run.FollowUps + 1;
        var calibration = new Calibration
        {
            Source = run.Source,
            Mode = run.Mode,
            Gamma = run.Gamma,
            Vocab = run.Vocab,
            PromptTokens = run.PromptTokens,
            Tokens = run.Tokens.Count,
            Rounds = rounds,
            SessionIdLength = Math.Max(1, run.SessionId.Length),
            TypicalTokenId = run.Tokens.Order().ElementAt(run.Tokens.Count / 2),
            DraftMsPerToken = Math.Round(draftPerToken, 5),
            VerifyMs = Math.Round(verify, 5),
            MeanBatch = run.MeanBatch,
            AcceptanceByPosition = byPosition.Count > 0 ? byPosition : [0],
            BrokerOverheadMs = Math.Round(Math.Max(0, overhead), 4),
            LinkRttMs = run.LinkRttMs,
            UplinkFramingBytes = (int)Math.Round((double)(run.UplinkWireBytes - run.UplinkPayloadBytes) / messages),
            DownlinkFramingBytes = (int)Math.Round((double)(run.DownlinkWireBytes - run.DownlinkPayloadBytes) / messages),
            RsrFollowUpRate = rejections == 0 ? 0 : Math.Round(Math.Min(0.5, (double)run.FollowUps / rejections), 4),
            Measured = new MeasuredFigures
            {
                TokensPerSecond = Math.Round(run.Tokens.Count * 1000.0 / run.ElapsedMs, 2),
                TimePerTokenMs = Math.Round(run.ElapsedMs / run.Tokens.Count, 4),
                UplinkBytesPerToken = Math.Round((double)run.UplinkPayloadBytes / run.Tokens.Count, 2),
                DownlinkBytesPerToken = Math.Round((double)run.DownlinkPayloadBytes / run.Tokens.Count, 2),
            },
        };
        return calibration with { RsrProposals = MeanProposals(calibration, run, rounds - rejections, rejections) };
    }

    /// <summary>
    /// rsr: the mean number of proposals per rejection, from the downlink bytes the run actually received, by solving
    /// the size of the real verdicts (linear in the number of proposals) for it.
    /// </summary>
    private static double MeanProposals(Calibration calibration, RunFacts run, long full, long rejections)
    {
        if (!SimModes.TryParse(run.Mode, out var mode) || mode != SimMode.Rsr || rejections == 0)
        {
            return 4;
        }

        var sizes = new MessageSizes(ToScenario(calibration) with { Mode = SimMode.Rsr });
        var carrying = rejections + run.FollowUps;
        var perVerdict = (double)(run.DownlinkPayloadBytes - sizes.Opened - (full * sizes.TokenVerdict)) / carrying;
        var one = sizes.RsrRejection(1);
        var step = sizes.RsrRejection(2) - one;
        return Math.Round(Math.Clamp(1 + ((perVerdict - one) / step), 1, 64), 3);
    }

    /// <summary>A scenario that reproduces the calibrated run on its own link (override the link to ask "what if").</summary>
    public static Scenario ToScenario(Calibration c)
    {
        SimModes.TryParse(c.Mode, out var mode);
        return new Scenario
        {
            Mode = mode,
            Gamma = c.Gamma,
            Vocab = c.Vocab,
            PromptTokens = Math.Max(1, c.PromptTokens),
            TokensPerRequest = Math.Max(1, c.Tokens),
            SessionIdLength = Math.Clamp(c.SessionIdLength, 1, 64),
            TypicalTokenId = Math.Clamp(c.TypicalTokenId, 0, c.Vocab - 1),
            RsrProposals = Math.Max(1, c.RsrProposals),
            RsrFollowUpRate = c.RsrFollowUpRate,
            BrokerHopMs = c.BrokerOverheadMs / 2,
            UplinkFramingBytes = Math.Max(0, c.UplinkFramingBytes),
            DownlinkFramingBytes = Math.Max(0, c.DownlinkFramingBytes),
            Device = new DeviceProfile { DraftMsPerToken = c.DraftMsPerToken },
            Link = new LinkProfile { RttMs = c.LinkRttMs, UpMbps = 10_000, DownMbps = 10_000 },
            Verifier = new VerifierProfile { FixedMs = c.VerifyMs, PerSequenceMs = 0, PerTokenMs = 0, CloudDraftMsPerToken = c.DraftMsPerToken },
            Acceptance = new AcceptanceProfile { ByPosition = c.AcceptanceByPosition },
        };
    }
}

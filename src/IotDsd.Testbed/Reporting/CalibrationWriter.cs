using IotDsd.Edge.Drafting;
using IotDsd.Sim.Calibration;

namespace IotDsd.Testbed.Reporting;

/// <summary>Writes the calibration file of a measured run (<c>--calibration-out</c>) for <c>iotdsd sim --calibration</c>.</summary>
internal static class CalibrationWriter
{
    /// <summary>The facts of one or more generations of the same settings, merged as one run.</summary>
    public static RunFacts Facts(IReadOnlyList<GenerationReport> reports, string source, int vocab, int promptTokens, double linkRttMs = 0)
    {
        var first = reports[0];
        return new RunFacts
        {
            Source = source,
            Mode = first.Mode.ToString().ToLowerInvariant(),
            Gamma = first.Gamma,
            Vocab = vocab,
            PromptTokens = promptTokens,
            Tokens = reports.SelectMany(r => r.Tokens).ToList(),
            SessionId = first.SessionId,
            ElapsedMs = reports.Sum(r => r.Elapsed.TotalMilliseconds),
            FollowUps = reports.Sum(r => r.FollowUps),
            UplinkPayloadBytes = reports.Sum(r => r.UplinkPayloadBytes),
            UplinkWireBytes = reports.Sum(r => r.UplinkWireBytes),
            DownlinkPayloadBytes = reports.Sum(r => r.DownlinkPayloadBytes),
            DownlinkWireBytes = reports.Sum(r => r.DownlinkWireBytes),
            MeanBatch = reports.Average(r => r.MeanBatch),
            LinkRttMs = linkRttMs,
            RoundMillis = reports.SelectMany(r => r.RoundMillis).ToList(),
            DraftMillis = reports.SelectMany(r => r.DraftMillis.Take(r.RoundMillis.Count)).ToList(),
            VerifyMillis = reports.SelectMany(r => r.VerifyMillis).ToList(),
            AcceptedPerRound = reports.SelectMany(r => r.AcceptedPerRound).ToList(),
            DraftedPerRound = reports.SelectMany(r => r.DraftedPerRound).ToList(),
        };
    }

    /// <summary>Writes the file (whole or not at all: a temporary file renamed into place).</summary>
    public static void Write(string path, IReadOnlyList<GenerationReport> reports, string source, int vocab, int promptTokens)
    {
        var calibration = Calibrator.FromRun(Facts(reports, source, vocab, promptTokens));
        var full = Path.GetFullPath(path);
        var temporary = full + ".tmp";
        File.WriteAllText(temporary, calibration.ToJson());
        File.Move(temporary, full, overwrite: true);
    }
}

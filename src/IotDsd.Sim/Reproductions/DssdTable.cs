using System.Text.Json.Serialization;
using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Reproductions;

/// <summary>One row of the DSSD paper's communication table: payload per round, as our encoder writes it.</summary>
public sealed record DssdTableRow
{
    [JsonPropertyName("vocab")] public int Vocab { get; init; }
    [JsonPropertyName("gamma")] public int Gamma { get; init; }
    [JsonPropertyName("dsd_uplink_bytes")] public int DsdUplinkBytes { get; init; }
    [JsonPropertyName("dsd_downlink_bytes")] public int DsdDownlinkBytes { get; init; }
    [JsonPropertyName("dssd_uplink_bytes")] public int DssdUplinkBytes { get; init; }
    [JsonPropertyName("dssd_downlink_bytes")] public int DssdDownlinkBytes { get; init; }
    [JsonPropertyName("rsr_downlink_bytes")] public int RsrDownlinkBytes { get; init; }
    [JsonPropertyName("rsr_proposals")] public int RsrProposals { get; init; }

    /// <summary>The paper's accounting: fp32 rows and probabilities, 32-bit token ids, nothing else.</summary>
    [JsonPropertyName("paper_dsd_uplink_bytes")] public long PaperDsdUplinkBytes { get; init; }

    [JsonPropertyName("paper_dssd_uplink_bytes")] public long PaperDssdUplinkBytes { get; init; }
    [JsonPropertyName("paper_dssd_downlink_bytes")] public long PaperDssdDownlinkBytes { get; init; }
}

/// <summary>
/// The DSSD paper's (Ning et al., ICML 2025) communication comparison, V = 32,000 and 128,000, γ = 3, 5, 10: our
/// payload sizes come from encoding the real messages; the paper's are its accounting (γ ids and γ vocabulary rows up
/// for DSD; γ ids and γ probabilities up and one vocabulary row down on a rejection for DSSD).
/// </summary>
public static class DssdTable
{
    public static readonly int[] Vocabs = [32_000, 128_000];
    public static readonly int[] Gammas = [3, 5, 10];
    public const int Proposals = 4;

    public static IReadOnlyList<DssdTableRow> Rows()
    {
        var rows = new List<DssdTableRow>();
        foreach (var vocab in Vocabs)
        {
            foreach (var gamma in Gammas)
            {
                var scenario = new Scenario { Vocab = vocab, Gamma = gamma };
                var dsd = new MessageSizes(scenario with { Mode = SimMode.Dsd });
                var dssd = new MessageSizes(scenario with { Mode = SimMode.Dssd });
                var rsr = new MessageSizes(scenario with { Mode = SimMode.Rsr });
                rows.Add(new DssdTableRow
                {
                    Vocab = vocab,
                    Gamma = gamma,
                    DsdUplinkBytes = dsd.RoundUp(gamma, first: false),
                    DsdDownlinkBytes = dsd.TokenVerdict,
                    DssdUplinkBytes = dssd.RoundUp(gamma, first: false),
                    DssdDownlinkBytes = dssd.DssdRejection,
                    RsrDownlinkBytes = rsr.RsrRejection(Proposals),
                    RsrProposals = Proposals,
                    PaperDsdUplinkBytes = (long)gamma * 4 * (vocab + 1),
                    PaperDssdUplinkBytes = (long)gamma * 4 * 2,
                    PaperDssdDownlinkBytes = 4L * vocab,
                });
            }
        }

        return rows;
    }
}

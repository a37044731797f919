using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;

namespace IotDsd.Testbed.Benches;

/// <summary>Both tables of <c>iotdsd bench wan</c>, with the facts needed to read them; prints as Markdown.</summary>
internal sealed record WanReport
{
    [JsonPropertyName("broker")] public required string Broker { get; init; }
    [JsonPropertyName("cores")] public int Cores { get; init; }

    /// <summary>False when the device has no shape other than sequential: both Table A columns then measure the same rounds.</summary>
    [JsonPropertyName("shapes_distinct")] public bool ShapesDistinct { get; init; }
    [JsonPropertyName("links")] public IReadOnlyList<string> Links { get; init; } = [];
    [JsonPropertyName("table_a")] public List<WanRowA> TableA { get; init; } = [];
    [JsonPropertyName("table_b")] public List<WanRowB> TableB { get; init; } = [];

    public string ToMarkdown()
    {
        var s = new StringBuilder();
        void Line(FormattableString text) => s.AppendLine(text.ToString(CultureInfo.InvariantCulture));
        Line($"broker {Broker}, {Cores} cores");
        if (TableA.Count > 0)
        {
            s.AppendLine();
            s.AppendLine("Table A: greedy, sequential against the device's default shape (each pair of cells in this run)");
            if (!ShapesDistinct)
            {
                s.AppendLine("(both columns gave the device the same options, as this build has no sequential switch: they ran the same rounds)");
            }

            s.AppendLine();
            s.AppendLine("| pair | one way | sequential tok/s | default tok/s | × | sequential tok/round | default tok/round | sequential tok/RTT | default tok/RTT | text = generate |");
            s.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
            foreach (var group in TableA.GroupBy(r => (r.Pair, r.OneWayMs)))
            {
                var seq = group.First(r => r.Shape == "sequential");
                var def = group.First(r => r.Shape == "default");
                var ratio = seq.TokensPerSecond > 0 ? def.TokensPerSecond / seq.TokensPerSecond : 0;
                var same = seq.TextMatchesGenerate && def.TextMatchesGenerate ? "yes" : $"no ({seq.Status}/{def.Status})";
                Line($"| {group.Key.Pair} | {group.Key.OneWayMs} ms | {seq.TokensPerSecond:0.0} | {def.TokensPerSecond:0.0} | {ratio:0.00} | {seq.TokensPerRound:0.00} | {def.TokensPerRound:0.00} | {Rtt(seq)} | {Rtt(def)} | {same} |");
            }
        }

        if (TableB.Count > 0)
        {
            s.AppendLine();
            s.AppendLine("Table B: per-round latency and payload bytes per token, real (through the link emulator) and simulated");
            foreach (var link in Links)
            {
                Line($"- {link}");
            }

            s.AppendLine();
            s.AppendLine("| V | link | mode | outcome | tok/s | tok/round | round p50 / p95 ms | up B/tok | down B/tok | γ max | sim tok/s | sim ms/round | sim up / down B/tok |");
            s.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var r in TableB)
            {
                var outcome = r.Status switch
                {
                    "ok" => string.Join(", ", r.Levels),
                    "cut" => string.Create(CultureInfo.InvariantCulture, $"cut at {r.ElapsedSeconds:0} s: {r.Tokens} tokens, level {string.Join(", ", r.Levels)}"),
                    _ => $"failed closed after {r.Tokens} tokens: {r.Error?.Split(';')[0]}",
                };
                var ok = r.Status == "ok";
                var perRound = ok ? string.Create(CultureInfo.InvariantCulture, $"{r.TokensPerRound:0.00}") : "—";
                var rounds = ok ? string.Create(CultureInfo.InvariantCulture, $"{r.RoundP50Ms:0} / {r.RoundP95Ms:0}") : "—";
                var bytes = ok ? "" : " (link)";
                var gamma = ok ? r.GammaMax.ToString(CultureInfo.InvariantCulture) : "—";
                Line($"| {r.Vocab:N0} | {r.Link} | {r.Mode} | {outcome} | {r.TokensPerSecond:0.0} | {perRound} | {rounds} | {r.UpBytesPerToken:N0}{bytes} | {r.DownBytesPerToken:N0}{bytes} | {gamma} | {Num(r.SimTokensPerSecond, "0.0")} | {Num(r.SimRoundMs, "0")} | {Num(r.SimUpBytesPerToken, "N0")} / {Num(r.SimDownBytesPerToken, "N0")} |");
            }
        }

        return s.ToString().TrimEnd();
    }

    private static string Rtt(WanRowA r) => r.OneWayMs == 0 ? "—" : r.TokensPerRtt.ToString("0.00", CultureInfo.InvariantCulture);

    private static string Num(double? v, string format) => v is { } x ? x.ToString(format, CultureInfo.InvariantCulture) : "—";
}

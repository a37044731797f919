using System.Diagnostics;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Testbed.Reporting;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The verifier's cost of token trees against chains (<c>iotdsd bench trees</c>): for each shape, mode and batch size,
/// the median time of one batched verification pass — every session's round checked, fed in one
/// <see cref="TokenTree.FeedBatch"/>, decided and its path kept — over consecutive rounds of real sessions drafted by the
/// draft model, the verifier time per committed token, and the uplink bytes of each round as <see cref="WireCodec"/>
/// encodes it.
/// </summary>
internal static class TreeCostBench
{
    /// <summary>The shapes measured: chains of 4 and 6, and trees of growing budget.</summary>
    public static readonly RoundShape[] Shapes =
    [
        RoundShape.Chain(4), RoundShape.Chain(6), new(4, 2, 8, 0), new(4, 3, 12, 0), new(6, 4, 16, 0), new(6, 4, 32, 0),
    ];

    /// <summary>The prompts the sessions start from (session b takes prompt b mod 8).</summary>
    public static readonly string[] Prompts =
    [
        "Once upon a time, there was a little girl named Lily.", "One day, a boy named Tom found a big red ball.",
        "The cat sat in the sun and", "Sam and his mom went to the park.", "There was a small bird who wanted to fly.",
        "Tim had a toy car. He", "Sue liked to help her dad in the garden.", "The dog was sad because",
    ];

    /// <summary>One measured point.</summary>
    public sealed record Point(string Mode, string Shape, int Batch, double Nodes, double VerifyMs, double CommittedPerRound, double MsPerCommittedToken, double UplinkBytesPerRound);

    /// <summary>Measures every (mode, shape, batch) and writes a table or JSON lines to <paramref name="o"/>.</summary>
    public static IReadOnlyList<Point> Run(ILanguageModel draft, ILanguageModel target, int[][] prompts, int[] batches, int rounds, bool json, TextWriter o)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(o);
        var modes = new[] { DecodingMode.Greedy, DecodingMode.Dsd };
        var progress = new ProgressReporter("bench trees");
        progress.Start($"timing batched verification of chains and trees ({rounds} rounds a point)", modes.Length * Shapes.Length * batches.Length, "points");
        var points = new List<Point>();
        if (!json)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"draft {draft.Name}, target {target.Name}, {prompts.Length} prompts, {Environment.ProcessorCount} cores, {rounds} rounds a point after one untimed round (verify ms: the median batch)"));
            o.WriteLine();
            o.WriteLine("| mode | shape | batch | nodes/round | verify ms (batch) | committed/round | verify ms per committed token | uplink bytes/round |");
            o.WriteLine("|---|---|---|---|---|---|---|---|");
        }

        Measure(draft, target, prompts, DecodingMode.Greedy, Shapes[^1], 2, 2); // warm-up, not reported
        foreach (var mode in modes)
        {
            foreach (var shape in Shapes)
            {
                foreach (var batch in batches)
                {
                    var p = Measure(draft, target, prompts, mode, shape, batch, rounds);
                    points.Add(p);
                    o.WriteLine(json
                        ? string.Create(CultureInfo.InvariantCulture,
                            $"{{\"mode\":\"{p.Mode}\",\"shape\":\"{p.Shape}\",\"batch\":{p.Batch},\"nodes\":{p.Nodes:0.##},\"verify_ms\":{p.VerifyMs:0.###},\"committed_per_round\":{p.CommittedPerRound:0.###},\"ms_per_committed_token\":{p.MsPerCommittedToken:0.####},\"uplink_bytes_per_round\":{p.UplinkBytesPerRound:0}}}")
                        : string.Create(CultureInfo.InvariantCulture,
                            $"| {p.Mode} | {p.Shape} | {p.Batch} | {p.Nodes:0.#} | {p.VerifyMs:0.000} | {p.CommittedPerRound:0.00} | {p.MsPerCommittedToken:0.0000} | {p.UplinkBytesPerRound:0} |"));
                    progress.Advance();
                }
            }
        }

        progress.Done();
        return points;
    }

    private static Point Measure(ILanguageModel draft, ILanguageModel target, int[][] prompts, DecodingMode mode, RoundShape shape, int batch, int rounds)
    {
        var times = new double[rounds];
        long nodes = 0, committed = 0, bytes = 0, sent = 0;
        double total = 0;
        var devices = new DraftSession[batch];
        var verifiers = new VerifierSession[batch];
        try
        {
            for (var b = 0; b < batch; b++)
            {
                var settings = new SessionSettings
                {
                    SessionId = $"bench-{b}",
                    Mode = mode,
                    Sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : new SamplingParams(0.8f, 0, 1f),
                    Seed = (ulong)(1 + b),
                    MaxTokens = 1024,
                    Gamma = shape.Depth,
                    MaxTreeNodes = shape.IsTree ? shape.Nodes : 0,
                };
                devices[b] = new DraftSession(draft, settings, prompts[b % prompts.Length]);
                verifiers[b] = new VerifierSession(target, devices[b].OpenRequest("bench"), "bench");

                // A first round (untimed) carries the prompt; the timed rounds build on it.
                devices[b].Apply(VerifyBatch(target, [verifiers[b]], [devices[b].PrepareRound(shape, 0)])[0]);
            }

            var work = new DraftRound[batch];
            for (var r = 0; r < rounds; r++)
            {
                for (var b = 0; b < batch; b++)
                {
                    work[b] = devices[b].PrepareRound(shape, 0);
                    nodes += work[b].Draft.Length;
                    bytes += WireCodec.Encode(work[b]).Length;
                    sent++;
                }

                var started = Stopwatch.GetTimestamp();
                var verdicts = VerifyBatch(target, verifiers, work);
                times[r] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                total += times[r];
                for (var b = 0; b < batch; b++)
                {
                    committed += verdicts[b].Accepted + 1;
                    devices[b].Apply(verdicts[b]);
                }
            }
        }
        finally
        {
            foreach (var d in devices) d?.Dispose();
            foreach (var v in verifiers) v?.Dispose();
        }

        Array.Sort(times);
        return new Point(mode.Name(), shape.ToString(), batch, (double)nodes / sent, times[times.Length / 2], (double)committed / sent, total / committed, (double)bytes / sent);
    }

    /// <summary>What the verifier does for one batch: check, one batched feed, decide.</summary>
    private static Verdict[] VerifyBatch(ILanguageModel target, VerifierSession[] sessions, DraftRound[] rounds)
    {
        var requests = new FeedRequest[sessions.Length];
        for (var i = 0; i < sessions.Length; i++)
        {
            var check = sessions[i].Check(rounds[i]);
            if (check.Kind != RoundCheckKind.Ok)
            {
                throw new InvalidOperationException($"bench round refused: {check.Reason}");
            }

            requests[i] = sessions[i].BeginFeed(rounds[i]);
        }

        TokenTree.FeedBatch(target, requests);
        var verdicts = new Verdict[sessions.Length];
        for (var i = 0; i < sessions.Length; i++)
        {
            verdicts[i] = sessions[i].Complete(rounds[i], requests[i].Logits.Span, sessions.Length, 0, 0);
        }

        return verdicts;
    }
}

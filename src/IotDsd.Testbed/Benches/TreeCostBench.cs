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
/// <see cref="TokenTree.FeedBatch"/>, decided and its path kept — with real rounds drafted by the draft model, and the
/// uplink bytes of each round as <see cref="WireCodec"/> encodes it.
/// </summary>
internal static class TreeCostBench
{
    /// <summary>The shapes measured: chains of 4 and 6, and trees of growing budget.</summary>
    public static readonly RoundShape[] Shapes =
    [
        RoundShape.Chain(4), RoundShape.Chain(6), new(4, 2, 8, 0), new(4, 3, 12, 0), new(6, 4, 16, 0), new(6, 4, 32, 0),
    ];

    /// <summary>The prompt the sessions start from.</summary>
    public const string Prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";

    /// <summary>One measured point.</summary>
    public sealed record Point(string Mode, string Shape, int Batch, double Nodes, double VerifyMs, double CommittedPerRound, double MsPerCommittedToken, double UplinkBytesPerRound);

    /// <summary>Measures every (mode, shape, batch) and writes a table or JSON lines to <paramref name="o"/>.</summary>
    public static IReadOnlyList<Point> Run(ILanguageModel draft, ILanguageModel target, int[] prompt, int[] batches, int iterations, bool json, TextWriter o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var modes = new[] { DecodingMode.Greedy, DecodingMode.Dsd };
        var progress = new ProgressReporter("bench trees");
        progress.Start($"timing batched verification of chains and trees (medians of {iterations})", modes.Length * Shapes.Length * batches.Length, "points");
        var points = new List<Point>();
        if (!json)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"draft {draft.Name}, target {target.Name}, prompt {prompt.Length} tokens, {Environment.ProcessorCount} cores, medians of {iterations}"));
            o.WriteLine();
            o.WriteLine("| mode | shape | batch | nodes/round | verify ms (batch) | committed/round | verify ms per committed token | uplink bytes/round |");
            o.WriteLine("|---|---|---|---|---|---|---|---|");
        }

        foreach (var mode in modes)
        {
            foreach (var shape in Shapes)
            {
                foreach (var batch in batches)
                {
                    var p = Measure(draft, target, prompt, mode, shape, batch, iterations);
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

    private static Point Measure(ILanguageModel draft, ILanguageModel target, int[] prompt, DecodingMode mode, RoundShape shape, int batch, int iterations)
    {
        var times = new double[iterations];
        long nodes = 0, committed = 0, bytes = 0, rounds = 0;
        for (var it = 0; it < iterations; it++)
        {
            var devices = new DraftSession[batch];
            var verifiers = new VerifierSession[batch];
            var work = new DraftRound[batch];
            try
            {
                for (var b = 0; b < batch; b++)
                {
                    var settings = new SessionSettings
                    {
                        SessionId = $"bench-{it}-{b}",
                        Mode = mode,
                        Sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : new SamplingParams(0.8f, 0, 1f),
                        Seed = (ulong)(1 + it),
                        MaxTokens = 256,
                        Gamma = shape.Depth,
                        MaxTreeNodes = shape.IsTree ? shape.Nodes : 0,
                    };
                    devices[b] = new DraftSession(draft, settings, prompt);
                    verifiers[b] = new VerifierSession(target, devices[b].OpenRequest("bench"), "bench");

                    // A first round (untimed) carries the prompt; the timed round builds on it.
                    var first = devices[b].PrepareRound(shape, 0);
                    devices[b].Apply(VerifyBatch(target, [verifiers[b]], [first])[0]);
                    work[b] = devices[b].PrepareRound(shape, 0);
                    nodes += work[b].Draft.Length;
                    bytes += WireCodec.Encode(work[b]).Length;
                    rounds++;
                }

                var started = Stopwatch.GetTimestamp();
                var verdicts = VerifyBatch(target, verifiers, work);
                times[it] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                foreach (var v in verdicts) committed += v.Accepted + 1;
            }
            finally
            {
                foreach (var d in devices) d?.Dispose();
                foreach (var v in verifiers) v?.Dispose();
            }
        }

        Array.Sort(times);
        var median = times[times.Length / 2];
        var perRound = (double)committed / rounds;
        return new Point(mode.Name(), shape.ToString(), batch, (double)nodes / rounds, median, perRound, median / (perRound * batch), (double)bytes / rounds);
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

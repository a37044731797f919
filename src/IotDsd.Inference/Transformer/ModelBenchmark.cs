using System.Diagnostics;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Measurements of any <see cref="ILanguageModel"/>: decode rate and managed allocation per step, verification
/// latency against the draft length γ, batched verification against the batch size, and a pass's cost split into its
/// fixed, per-sequence and per-token parts. Prompts are byte tokens.
/// </summary>
public static class ModelBenchmark
{
    /// <summary>Decoding one token at a time after a prompt.</summary>
    /// <param name="ManagedBytesPerStep">Managed bytes allocated per step once warm (no capacity growth in the window).</param>
    public sealed record DecodeResult(double TokensPerSecond, double MillisPerToken, double ManagedBytesPerStep);

    /// <summary>One batched verification pass.</summary>
    /// <param name="Millis">Median time of one batched pass.</param>
    /// <param name="SequentialMillis">Median time of the same rounds fed one sequence at a time.</param>
    public sealed record BatchResult(int Batch, double Millis, double SequentialMillis, double TokensPerSecond);

    private static int[] Prompt(int length, int salt)
    {
        const string text = "The meaning of life is a question that every computer asks itself at night. ";
        var tokens = new int[length];
        for (int i = 0; i < length; i++) tokens[i] = text[(i + salt) % text.Length];
        return tokens;
    }

    public static DecodeResult Decode(ILanguageModel model, int steps)
    {
        ArgumentNullException.ThrowIfNull(model);
        var row = new float[model.VocabSize];
        using (var seq = model.CreateSequence())
        {
            // Allocation window: prompt 32, 5 warm steps, 24 measured: stays inside one capacity.
            seq.Feed(Prompt(32, 0), row);
            for (int i = 0; i < 5; i++) seq.Feed([Distribution.ArgMax(row) & 0xFF], row);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 24; i++) seq.Feed([Distribution.ArgMax(row) & 0xFF], row);
            double bytes = (GC.GetAllocatedBytesForCurrentThread() - before) / 24.0;

            seq.Truncate(32);
            var started = Stopwatch.GetTimestamp();
            for (int i = 0; i < steps; i++) seq.Feed([Distribution.ArgMax(row) & 0xFF], row);
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            return new DecodeResult(steps / seconds, seconds * 1000 / steps, bytes);
        }
    }

    /// <summary>Median milliseconds to verify γ drafted tokens (γ+1 tokens in, γ+1 rows out) after <paramref name="prefix"/> tokens.</summary>
    public static double VerifyMillis(ILanguageModel model, int prefix, int gamma, int iterations)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var seq = model.CreateSequence();
        seq.Feed(Prompt(prefix, 0), new float[model.VocabSize]);
        var chunk = Prompt(gamma + 1, 7);
        var logits = new float[(gamma + 1) * model.VocabSize];
        var samples = new double[iterations];
        for (int i = -3; i < iterations; i++)
        {
            var started = Stopwatch.GetTimestamp();
            seq.Feed(chunk, logits);
            if (i >= 0) samples[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            seq.Truncate(prefix);
        }
        return Median(samples);
    }

    /// <summary>
    /// <paramref name="batch"/> sessions with ragged prefixes (48–80 tokens) each verifying γ drafts: one batched pass
    /// against the same rounds one at a time.
    /// </summary>
    public static BatchResult Batch(ILanguageModel model, int batch, int gamma, int iterations)
    {
        ArgumentNullException.ThrowIfNull(model);
        var (ms, sequential) = BatchedPass(model, batch, gamma + 1, iterations, sequentialToo: true);
        return new BatchResult(batch, ms, sequential, batch * (gamma + 1) / (ms / 1000));
    }

    /// <summary>Median ms of one batched pass of <paramref name="batch"/> ragged sequences (prefixes 48–80) fed <paramref name="tokensEach"/> tokens each, and of the same fed one at a time.</summary>
    private static (double Batched, double Sequential) BatchedPass(ILanguageModel model, int batch, int tokensEach, int iterations, bool sequentialToo)
    {
        var sequences = new IModelSequence[batch];
        try
        {
            var requests = new FeedRequest[batch];
            var prefixes = new int[batch];
            for (int b = 0; b < batch; b++)
            {
                sequences[b] = model.CreateSequence();
                prefixes[b] = 48 + (b * 7 % 33);
                sequences[b].Feed(Prompt(prefixes[b], b), []);
                requests[b] = new FeedRequest(sequences[b], Prompt(tokensEach, b + 3), new float[tokensEach * model.VocabSize]);
            }

            var batched = new double[iterations];
            var sequential = new double[iterations];
            for (int i = -2; i < iterations; i++)
            {
                var started = Stopwatch.GetTimestamp();
                model.FeedBatch(requests);
                if (i >= 0) batched[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                for (int b = 0; b < batch; b++) sequences[b].Truncate(prefixes[b]);
                if (!sequentialToo) continue;

                started = Stopwatch.GetTimestamp();
                foreach (var r in requests) r.Sequence.Feed(r.Tokens.Span, r.Logits.Span);
                if (i >= 0) sequential[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                for (int b = 0; b < batch; b++) sequences[b].Truncate(prefixes[b]);
            }

            return (Median(batched), sequentialToo ? Median(sequential) : double.NaN);
        }
        finally
        {
            foreach (var s in sequences) s?.Dispose();
        }
    }

    /// <summary>
    /// Median milliseconds of one batched verification pass of γ + 1 tokens for <paramref name="batch"/> sessions that
    /// each hold <paramref name="context"/> cached tokens: the sessions are prefilled once, only the verification pass
    /// is timed, and every session is cut back to <paramref name="context"/> after each pass so the context stays fixed.
    /// </summary>
    public static double ContextVerifyMillis(ILanguageModel model, int batch, int context, int gamma, int iterations)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(gamma, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        var sequences = new IModelSequence[batch];
        try
        {
            var requests = new FeedRequest[batch];
            for (int b = 0; b < batch; b++)
            {
                sequences[b] = model.CreateSequence();
                sequences[b].Feed(Prompt(context, b), []);
                requests[b] = new FeedRequest(sequences[b], Prompt(gamma + 1, b + 3), new float[(gamma + 1) * model.VocabSize]);
            }

            var samples = new double[iterations];
            for (int i = -2; i < iterations; i++)
            {
                var started = Stopwatch.GetTimestamp();
                model.FeedBatch(requests);
                if (i >= 0) samples[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                for (int b = 0; b < batch; b++) sequences[b].Truncate(context);
            }

            return Median(samples);
        }
        finally
        {
            foreach (var s in sequences) s?.Dispose();
        }
    }

    /// <summary>One point of <see cref="PassCost"/>: a batched pass of <paramref name="Sessions"/> sequences, each fed <paramref name="TokensEach"/> tokens.</summary>
    public sealed record PassPoint(int Sessions, int TokensEach, double Millis);

    /// <summary>
    /// A forward pass's cost as a fixed part (reading the weights), a part per sequence in the batch (its cache, its
    /// attention) and a part per token fed (arithmetic), fitted by least squares to <see cref="Points"/>.
    /// <see cref="MemoryBoundTokens"/> is where a pass's arithmetic reaches its fixed part: below it more tokens a pass
    /// come nearly free, which is what speculative verification and batching live on.
    /// </summary>
    public sealed record PassCostFit(double FixedMillis, double PerSessionMillis, double PerTokenMillis, IReadOnlyList<PassPoint> Points)
    {
        public double MemoryBoundTokens => PerTokenMillis > 0 ? FixedMillis / PerTokenMillis : double.PositiveInfinity;

        /// <summary>The fit's cost of one pass.</summary>
        public double Millis(int sessions, int tokens) => FixedMillis + (PerSessionMillis * sessions) + (PerTokenMillis * tokens);
    }

    /// <summary>
    /// Measures batched passes over a grid of session counts and tokens per session (1 token: plain decoding; γ + 1:
    /// verification) and fits <see cref="PassCostFit"/>.
    /// </summary>
    public static PassCostFit PassCost(ILanguageModel model, int iterations, IReadOnlyList<int> sessions, IReadOnlyList<int> tokensEach)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sessions);
        ArgumentNullException.ThrowIfNull(tokensEach);
        var points = new List<PassPoint>();
        foreach (var n in sessions)
        {
            foreach (var k in tokensEach)
            {
                points.Add(new PassPoint(n, k, BatchedPass(model, n, k, iterations, sequentialToo: false).Batched));
            }
        }

        return Fit(points);
    }

    /// <summary>Least-squares fit of ms = F + s·sessions + t·tokens to measured passes.</summary>
    public static PassCostFit Fit(IReadOnlyList<PassPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);

        // Normal equations of ms = F + s·sessions + t·tokens (3×3, solved by Cramer's rule).
        double[,] a = new double[3, 3];
        double[] b = new double[3];
        foreach (var p in points)
        {
            double[] x = [1, p.Sessions, p.Sessions * p.TokensEach];
            for (int i = 0; i < 3; i++)
            {
                b[i] += x[i] * p.Millis;
                for (int j = 0; j < 3; j++) a[i, j] += x[i] * x[j];
            }
        }

        double det = Det(a);
        if (Math.Abs(det) < 1e-9)
        {
            throw new ArgumentException("the grid needs at least two session counts and two token counts to separate the three parts");
        }

        var coef = new double[3];
        for (int c = 0; c < 3; c++)
        {
            var m = (double[,])a.Clone();
            for (int r = 0; r < 3; r++) m[r, c] = b[r];
            coef[c] = Det(m) / det;
        }

        return new PassCostFit(coef[0], coef[1], coef[2], points);
    }

    private static double Det(double[,] m) =>
        (m[0, 0] * ((m[1, 1] * m[2, 2]) - (m[1, 2] * m[2, 1])))
        - (m[0, 1] * ((m[1, 0] * m[2, 2]) - (m[1, 2] * m[2, 0])))
        + (m[0, 2] * ((m[1, 0] * m[2, 1]) - (m[1, 1] * m[2, 0])));

    private static double Median(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }
}

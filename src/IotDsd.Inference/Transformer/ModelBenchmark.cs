using System.Diagnostics;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// Measurements of any <see cref="ILanguageModel"/>: decode rate and managed allocation per step, verification
/// latency against the draft length γ, and batched verification against the batch size. Prompts are byte tokens.
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
                requests[b] = new FeedRequest(sequences[b], Prompt(gamma + 1, b + 3), new float[(gamma + 1) * model.VocabSize]);
            }

            var batched = new double[iterations];
            var sequential = new double[iterations];
            for (int i = -2; i < iterations; i++)
            {
                var started = Stopwatch.GetTimestamp();
                model.FeedBatch(requests);
                if (i >= 0) batched[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                for (int b = 0; b < batch; b++) sequences[b].Truncate(prefixes[b]);

                started = Stopwatch.GetTimestamp();
                foreach (var r in requests) r.Sequence.Feed(r.Tokens.Span, r.Logits.Span);
                if (i >= 0) sequential[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                for (int b = 0; b < batch; b++) sequences[b].Truncate(prefixes[b]);
            }
            double ms = Median(batched);
            return new BatchResult(batch, ms, Median(sequential), batch * (gamma + 1) / (ms / 1000));
        }
        finally
        {
            foreach (var s in sequences) s?.Dispose();
        }
    }

    private static double Median(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }
}

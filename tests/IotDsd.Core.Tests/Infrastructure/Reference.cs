using IotDsd.Core.Sampling;

namespace IotDsd.Core.Tests.Infrastructure;

/// <summary>
/// An independent double-precision implementation of the sampling distribution (temperature, then top-k, then the
/// smallest prefix of the top-k reaching top-p, ties by lower id) and of the exact autoregressive joint distribution.
/// </summary>
internal static class Reference
{
    public static double[] Probabilities(ReadOnlySpan<float> logits, SamplingParams sampling)
    {
        var v = logits.Length;
        var probs = new double[v];
        if (sampling.IsGreedy)
        {
            probs[ArgMax(logits)] = 1.0;
            return probs;
        }

        double max = double.NegativeInfinity;
        foreach (var l in logits)
        {
            max = Math.Max(max, l);
        }

        double sum = 0;
        for (var i = 0; i < v; i++)
        {
            probs[i] = Math.Exp((logits[i] - max) / sampling.Temperature);
            sum += probs[i];
        }

        for (var i = 0; i < v; i++)
        {
            probs[i] /= sum;
        }

        var order = Enumerable.Range(0, v).OrderByDescending(i => probs[i]).ThenBy(i => i).ToArray();
        var keep = sampling.TopK > 0 ? Math.Min(sampling.TopK, v) : v;
        if (sampling.TopP < 1f)
        {
            double cumulative = 0;
            for (var r = 0; r < keep; r++)
            {
                cumulative += probs[order[r]];
                if (cumulative >= sampling.TopP)
                {
                    keep = r + 1;
                    break;
                }
            }
        }

        var kept = new double[v];
        double keptSum = 0;
        for (var r = 0; r < keep; r++)
        {
            kept[order[r]] = probs[order[r]];
            keptSum += probs[order[r]];
        }

        for (var i = 0; i < v; i++)
        {
            kept[i] /= keptSum;
        }

        return kept;
    }

    /// <summary>Smallest distance between a top-p threshold and any partial sum of the sorted distribution.</summary>
    public static double TopPMargin(ReadOnlySpan<float> logits, SamplingParams sampling)
    {
        var full = Probabilities(logits, sampling with { TopK = 0, TopP = 1f });
        var sorted = full.OrderByDescending(p => p).ToArray();
        double cumulative = 0, margin = double.PositiveInfinity;
        var k = sampling.TopK > 0 ? Math.Min(sampling.TopK, sorted.Length) : sorted.Length;
        for (var r = 0; r < k; r++)
        {
            cumulative += sorted[r];
            margin = Math.Min(margin, Math.Abs(cumulative - sampling.TopP));
        }

        return margin;
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>
    /// P(x_1..x_L | prompt) for every sequence of length <paramref name="length"/>, indexed by Σ x_i · V^(i−1).
    /// </summary>
    public static double[] Joint(TableModel model, IReadOnlyList<int> prompt, int length, SamplingParams sampling)
    {
        var v = model.VocabSize;
        var cells = (int)Math.Pow(v, length);
        var joint = new double[cells];
        var history = new List<int>(prompt);
        Recurse(model, history, 0, length, 1.0, 0, 1, sampling, joint);
        return joint;
    }

    private static void Recurse(TableModel model, List<int> history, int depth, int length, double mass, int index, int stride, SamplingParams sampling, double[] joint)
    {
        if (depth == length)
        {
            joint[index] += mass;
            return;
        }

        var probs = Probabilities(model.RowAfter(history), sampling);
        for (var t = 0; t < probs.Length; t++)
        {
            if (probs[t] == 0)
            {
                continue;
            }

            history.Add(t);
            Recurse(model, history, depth + 1, length, mass * probs[t], index + (t * stride), stride * model.VocabSize, sampling, joint);
            history.RemoveAt(history.Count - 1);
        }
    }

    /// <summary>The cell index of a generated sequence.</summary>
    public static int Cell(ReadOnlySpan<int> tokens, int vocab)
    {
        var index = 0;
        var stride = 1;
        foreach (var t in tokens)
        {
            index += t * stride;
            stride *= vocab;
        }

        return index;
    }

    /// <summary>Greedy decoding straight from the table.</summary>
    public static int[] Greedy(TableModel model, IReadOnlyList<int> prompt, int length)
    {
        var history = new List<int>(prompt);
        for (var i = 0; i < length; i++)
        {
            history.Add(ArgMax(model.RowAfter(history)));
        }

        return history.Skip(prompt.Count).ToArray();
    }
}

namespace IotDsd.Core.Sampling;

/// <summary>
/// Turns logits into the sampling distribution and samples from it. Deterministic: ties are broken by the lower
/// token id, sums are accumulated in double in token order, so both sides get bit-identical rows from identical logits.
/// </summary>
public static class Distribution
{
    /// <summary>Index of the largest value; the lowest index among equals. NaN never wins.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        var bestValue = float.NegativeInfinity;
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i] > bestValue)
            {
                bestValue = values[i];
                best = i;
            }
        }

        return best;
    }

    /// <summary>
    /// Writes the sampling distribution for <paramref name="logits"/> into <paramref name="probs"/>: temperature,
    /// then top-k, then top-p, then renormalisation. Greedy gives a one-hot row at the argmax.
    /// </summary>
    public static void FromLogits(ReadOnlySpan<float> logits, in SamplingParams sampling, Span<float> probs)
    {
        if (probs.Length != logits.Length)
        {
            throw new ArgumentException("probs and logits differ in length", nameof(probs));
        }

        if (sampling.IsGreedy)
        {
            probs.Clear();
            probs[ArgMax(logits)] = 1f;
            return;
        }

        var max = logits[ArgMax(logits)];
        var invT = 1.0 / sampling.Temperature;
        double sum = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            var e = Math.Exp((logits[i] - max) * invT);
            probs[i] = (float)e;
            sum += probs[i];
        }

        Normalize(probs, sum);
        var k = sampling.TopK;
        if ((k > 0 && k < probs.Length) || sampling.TopP < 1f)
        {
            Truncate(probs, k > 0 ? Math.Min(k, probs.Length) : probs.Length, sampling.TopP);
        }
    }

    /// <summary>Keeps the <paramref name="topK"/> most likely tokens, then the smallest prefix reaching <paramref name="topP"/>.</summary>
    private static void Truncate(Span<float> probs, int topK, float topP)
    {
        var order = new int[probs.Length];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var copy = probs.ToArray();
        Array.Sort(order, (a, b) =>
        {
            var c = copy[b].CompareTo(copy[a]);
            return c != 0 ? c : a.CompareTo(b);
        });

        var keep = topK;
        if (topP < 1f)
        {
            double cumulative = 0;
            for (var r = 0; r < topK; r++)
            {
                cumulative += copy[order[r]];
                if (cumulative >= topP)
                {
                    keep = r + 1;
                    break;
                }
            }
        }

        probs.Clear();
        double sum = 0;
        for (var r = 0; r < keep; r++)
        {
            probs[order[r]] = copy[order[r]];
        }

        for (var i = 0; i < probs.Length; i++)
        {
            sum += probs[i];
        }

        Normalize(probs, sum);
    }

    private static void Normalize(Span<float> probs, double sum)
    {
        var inv = 1.0 / sum;
        for (var i = 0; i < probs.Length; i++)
        {
            probs[i] = (float)(probs[i] * inv);
        }
    }

    /// <summary>Inverse-CDF sampling with a uniform <paramref name="u"/> in [0, 1). Never returns a zero-probability token.</summary>
    public static int Sample(ReadOnlySpan<float> probs, double u)
    {
        // Only positive entries carry mass: NaN and negative entries are treated as zero, never returned.
        double total = 0;
        for (var i = 0; i < probs.Length; i++)
        {
            if (probs[i] > 0f)
            {
                total += probs[i];
            }
        }

        var target = u * total;
        double cumulative = 0;
        var last = -1;
        for (var i = 0; i < probs.Length; i++)
        {
            if (!(probs[i] > 0f))
            {
                continue;
            }

            cumulative += probs[i];
            last = i;
            if (target < cumulative)
            {
                return i;
            }
        }

        return last >= 0 ? last : throw new ArgumentException("distribution has no positive mass", nameof(probs));
    }

    /// <summary>
    /// Writes <c>max(0, p − q)</c> into <paramref name="residual"/> and returns its mass (unnormalised; <see cref="Sample"/>
    /// normalises). Computed on probabilities, never on logits.
    /// </summary>
    public static double Residual(ReadOnlySpan<float> p, ReadOnlySpan<float> q, Span<float> residual)
    {
        double mass = 0;
        for (var i = 0; i < p.Length; i++)
        {
            var r = p[i] - q[i];
            residual[i] = r > 0f ? r : 0f;
            mass += residual[i];
        }

        return mass;
    }
}

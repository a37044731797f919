namespace IotDsd.Inference.Ngram;

/// <summary>
/// Interpolated Kneser–Ney n-gram model (the C# reference for the compiled ONNX graph).
/// Vocabulary: the 256 byte values (<see cref="Train"/>), or any <see cref="Live"/> tokens (<see cref="FromCounts"/>:
/// a token model); contexts are padded on the left with <see cref="PadToken"/> (a record start), 256 for bytes.
/// One discount per order, <c>D = n1 / (n1 + 2 n2)</c>; lower orders use continuation counts (raw counts for
/// n-grams that begin with padding, which cannot be extended to the left); the unigram is interpolated with the
/// uniform distribution, so every probability is strictly positive and each distribution sums to one.
/// </summary>
/// <remarks>
/// Keys: a context <c>h_1..h_m</c> (oldest first) has key <c>Σ h_{m-j} · B^j</c> with B = <see cref="Base"/> (257 for
/// bytes; the newest token has weight 1); an n-gram's key is <c>contextKey · B + w</c>. The ONNX graph computes the same keys.
/// </remarks>
public sealed class KneserNeyModel
{
    /// <summary>Vocabulary of a byte model (and <see cref="Pad"/>, <see cref="KeyBase"/> its padding and key base).</summary>
    public const int VocabSize = 256;
    public const int Pad = 256;
    public const long KeyBase = 257;

    private readonly double[] _unigram;
    // index k-2 for orders k = 2..Order
    private readonly Dictionary<long, double>[] _terms;
    private readonly Dictionary<long, double>[] _lambdas;
    private readonly double[] _discounts;

    private KneserNeyModel(int order, double[] unigram, Dictionary<long, double>[] terms, Dictionary<long, double>[] lambdas, double[] discounts)
    {
        Live = unigram.Length;
        Order = order;
        _unigram = unigram;
        _terms = terms;
        _lambdas = lambdas;
        _discounts = discounts;
    }

    /// <summary>n: the model conditions on the last n-1 tokens.</summary>
    public int Order { get; }

    /// <summary>
    /// Tokens the model predicts: 256 for a byte model, a tokenizer's vocabulary for a token model. Contexts are padded
    /// with <see cref="PadToken"/> = <see cref="Live"/> and keys use base <see cref="Base"/> = Live + 1.
    /// </summary>
    public int Live { get; }

    public int PadToken => Live;
    public long Base => Live + 1L;

    /// <summary>Highest order whose keys fit a 64-bit integer for a vocabulary of <paramref name="live"/> tokens (at most 7).</summary>
    public static int MaxOrder(int live)
    {
        int order = 1;
        double limit = Math.Log(long.MaxValue);
        while (order < 7 && (order + 1) * Math.Log(live + 1.0) < limit) order++;
        return order;
    }

    /// <summary>Discount per order; index 0 is the unigram.</summary>
    public IReadOnlyList<double> Discounts => _discounts;

    /// <summary>Interpolated unigram distribution (256 entries).</summary>
    internal ReadOnlySpan<double> Unigram => _unigram;

    /// <summary>Discounted n-gram terms of order <paramref name="k"/> (2..Order), keyed by n-gram key; absent = 0.</summary>
    internal IReadOnlyDictionary<long, double> Terms(int k) => _terms[k - 2];

    /// <summary>Back-off weights of order <paramref name="k"/> keyed by context key; absent = 1 (unseen context).</summary>
    internal IReadOnlyDictionary<long, double> Lambdas(int k) => _lambdas[k - 2];

    /// <summary>Trains on <paramref name="records"/>; each record starts with an all-padding history.</summary>
    public static KneserNeyModel Train(IReadOnlyList<byte[]> records, int order)
    {
        ArgumentNullException.ThrowIfNull(records);
        if (order < 2 || order > 7) throw new ArgumentOutOfRangeException(nameof(order), order, "Order must be 2..7.");

        var pow = Powers(order);
        // raw[k-1]: counts of k-grams
        var raw = new Dictionary<long, int>[order];
        for (int k = 0; k < order; k++) raw[k] = new Dictionary<long, int>();
        foreach (var rec in records)
        {
            for (int i = 0; i < rec.Length; i++)
            {
                long w = rec[i];
                long ctx = 0;
                Increment(raw[0], w);
                for (int k = 2; k <= order; k++)
                {
                    int back = i - (k - 1);
                    long tok = back >= 0 ? rec[back] : Pad;
                    ctx += tok * pow[k - 2];
                    Increment(raw[k - 1], ctx * KeyBase + w);
                }
            }
        }

        return FromCounts(raw, order);
    }

    /// <summary>
    /// The key of the k-gram ending in <paramref name="token"/> after <paramref name="history"/> (newest last,
    /// left-padded with <see cref="Pad"/> where shorter than k-1), as <see cref="Train"/> counts it.
    /// </summary>
    public static long NgramKey(ReadOnlySpan<int> history, int k, int token) => NgramKey(history, k, token, VocabSize);

    /// <summary>As <see cref="NgramKey(ReadOnlySpan{int}, int, int)"/> for a vocabulary of <paramref name="live"/> tokens.</summary>
    public static long NgramKey(ReadOnlySpan<int> history, int k, int token, int live)
    {
        long ctx = 0, weight = 1, keyBase = live + 1L;
        for (int back = 1; back < k; back++)
        {
            int i = history.Length - back;
            ctx += (i >= 0 ? history[i] : live) * weight;
            weight *= keyBase;
        }

        return ctx * keyBase + token;
    }

    /// <summary>
    /// Builds the model from raw k-gram counts (<paramref name="raw"/>[k-1] keyed by <see cref="NgramKey"/>, unigrams
    /// by token), however they were gathered: <see cref="Train"/> counts a corpus, distillation counts a target's
    /// expected next-token mass.
    /// </summary>
    public static KneserNeyModel FromCounts(Dictionary<long, int>[] raw, int order, int live = VocabSize)
    {
        ArgumentNullException.ThrowIfNull(raw);
        if (live < 2) throw new ArgumentOutOfRangeException(nameof(live), live, "The vocabulary needs at least two tokens.");
        if (order < 2 || order > MaxOrder(live)) throw new ArgumentOutOfRangeException(nameof(order), order, $"Order must be 2..{MaxOrder(live)} for {live} tokens.");
        if (raw.Length != order) throw new ArgumentException($"Expected counts of orders 1..{order}.", nameof(raw));
        long keyBase = live + 1L;
        long pad = live;
        int vocab = live;
        var pow = Powers(order, keyBase);

        // Adjusted counts: highest order raw; lower orders continuation counts, raw for pad-initial n-grams.
        var adj = new Dictionary<long, int>[order];
        adj[order - 1] = raw[order - 1];
        for (int k = order - 1; k >= 1; k--)
        {
            var a = new Dictionary<long, int>(raw[k - 1].Count);
            long suffixMod = pow[k - 1]; // 257^(k-1): context of the (k+1)-gram has k tokens
            foreach (var key in raw[k].Keys)
            {
                long ctx = key / keyBase, w = key % keyBase;
                long suffixCtx = ctx % suffixMod;
                if (k >= 2 && suffixCtx / pow[k - 2] == pad) continue; // pad-initial suffix: raw count below
                Increment(a, suffixCtx * keyBase + w);
            }
            if (k >= 2)
            {
                foreach (var (key, count) in raw[k - 1])
                {
                    if (key / keyBase / pow[k - 2] == pad) a[key] = count;
                }
            }
            adj[k - 1] = a;
        }

        var discounts = new double[order];
        for (int k = 1; k <= order; k++) discounts[k - 1] = Discount(adj[k - 1]);

        // Unigram, interpolated with uniform.
        var unigram = new double[vocab];
        {
            double d = discounts[0];
            long total = 0; int types = 0;
            foreach (var (_, c) in adj[0]) { total += c; types++; }
            double lambda = total > 0 ? d * types / total : 1.0;
            for (int w = 0; w < vocab; w++)
            {
                double term = total > 0 && adj[0].TryGetValue(w, out int c) ? Math.Max(c - d, 0) / total : 0;
                unigram[w] = term + lambda / vocab;
            }
        }

        var terms = new Dictionary<long, double>[order - 1];
        var lambdas = new Dictionary<long, double>[order - 1];
        for (int k = 2; k <= order; k++)
        {
            double d = discounts[k - 1];
            var totals = new Dictionary<long, (long Total, int Types)>();
            foreach (var (key, c) in adj[k - 1])
            {
                long ctx = key / keyBase;
                totals.TryGetValue(ctx, out var t);
                totals[ctx] = (t.Total + c, t.Types + 1);
            }
            var term = new Dictionary<long, double>();
            foreach (var (key, c) in adj[k - 1])
            {
                double v = Math.Max(c - d, 0);
                if (v > 0) term[key] = v / totals[key / keyBase].Total;
            }
            var lam = new Dictionary<long, double>(totals.Count);
            foreach (var (ctx, t) in totals) lam[ctx] = d * t.Types / t.Total;
            terms[k - 2] = term;
            lambdas[k - 2] = lam;
        }
        return new KneserNeyModel(order, unigram, terms, lambdas, discounts);
    }

    /// <summary>
    /// Writes P(w | context) for all <see cref="Live"/> tokens into <paramref name="probs"/>. <paramref name="context"/> holds the
    /// history, newest last; only its last Order-1 tokens matter, and it is left-padded with <see cref="PadToken"/>.
    /// Tokens are 0..Live-1 or <see cref="PadToken"/>.
    /// </summary>
    public void Probabilities(ReadOnlySpan<int> context, Span<double> probs)
    {
        long keyBase = Base;
        int vocab = Live;
        if (probs.Length != vocab) throw new ArgumentException($"probs must hold {vocab} entries.", nameof(probs));
        _unigram.CopyTo(probs);
        long ctx = 0, weight = 1;
        for (int k = 2; k <= Order; k++)
        {
            ctx += TokenAt(context, k - 1) * weight;
            weight *= keyBase;
            if (!_lambdas[k - 2].TryGetValue(ctx, out double lambda)) continue;
            var terms = _terms[k - 2];
            for (int w = 0; w < vocab; w++)
            {
                terms.TryGetValue(ctx * keyBase + w, out double term);
                probs[w] = term + lambda * probs[w];
            }
        }
    }

    /// <summary>P(<paramref name="token"/> | context), as <see cref="Probabilities"/> computes it.</summary>
    public double Probability(ReadOnlySpan<int> context, int token)
    {
        long keyBase = Base;
        if ((uint)token >= Live) throw new ArgumentOutOfRangeException(nameof(token));
        double p = _unigram[token];
        long ctx = 0, weight = 1;
        for (int k = 2; k <= Order; k++)
        {
            ctx += TokenAt(context, k - 1) * weight;
            weight *= keyBase;
            if (!_lambdas[k - 2].TryGetValue(ctx, out double lambda)) continue;
            _terms[k - 2].TryGetValue(ctx * keyBase + token, out double term);
            p = term + lambda * p;
        }
        return p;
    }

    /// <summary>Average bits per token over token <paramref name="records"/>, each starting from an empty history.</summary>
    public double BitsPerToken(IReadOnlyList<int[]> records)
    {
        double bits = 0; long n = 0;
        var ctx = new int[Order - 1];
        foreach (var rec in records)
        {
            ctx.AsSpan().Fill(PadToken);
            foreach (var t in rec)
            {
                bits -= Math.Log2(Probability(ctx, t));
                n++;
                if (ctx.Length > 0)
                {
                    Array.Copy(ctx, 1, ctx, 0, ctx.Length - 1);
                    ctx[^1] = t;
                }
            }
        }
        return n == 0 ? double.NaN : bits / n;
    }

    /// <summary>Average bits per byte over <paramref name="records"/>, each starting from an empty history.</summary>
    public double BitsPerByte(IReadOnlyList<byte[]> records)
    {
        double bits = 0; long n = 0;
        var ctx = new int[Order - 1];
        foreach (var rec in records)
        {
            ctx.AsSpan().Fill(PadToken);
            foreach (var b in rec)
            {
                bits -= Math.Log2(Probability(ctx, b));
                n++;
                if (ctx.Length > 0)
                {
                    Array.Copy(ctx, 1, ctx, 0, ctx.Length - 1);
                    ctx[^1] = b;
                }
            }
        }
        return n == 0 ? double.NaN : bits / n;
    }

    private long TokenAt(ReadOnlySpan<int> context, int back)
    {
        int i = context.Length - back;
        if (i < 0) return PadToken;
        int t = context[i];
        if ((uint)t > (uint)PadToken) throw new ArgumentOutOfRangeException(nameof(context), t, $"Context tokens must be 0..{PadToken}.");
        return t;
    }

    private static long[] Powers(int order, long keyBase = KeyBase)
    {
        var pow = new long[order];
        pow[0] = 1;
        for (int i = 1; i < order; i++) pow[i] = pow[i - 1] * keyBase;
        return pow;
    }

    private static void Increment(Dictionary<long, int> d, long key)
    {
        ref int slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(d, key, out _);
        slot++;
    }

    private static double Discount(Dictionary<long, int> counts)
    {
        long n1 = 0, n2 = 0;
        foreach (var (_, c) in counts)
        {
            if (c == 1) n1++;
            else if (c == 2) n2++;
        }
        if (n1 == 0) return 0.5;
        return (double)n1 / (n1 + 2 * n2);
    }
}

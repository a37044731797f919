using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Distillation;

/// <summary>Settings of one distillation: how much text to sample from the target, and how.</summary>
/// <param name="Sequences">Completions sampled, each from its own corpus prompt.</param>
/// <param name="TokensPerSequence">Tokens sampled per completion.</param>
/// <param name="Batch">Completions decoded together in one forward pass.</param>
/// <param name="PromptBytes">Bytes of each corpus record used as the prompt.</param>
/// <param name="Sampling">The sampling the draft will serve (temperature, top-k, top-p).</param>
/// <param name="Seed">Seed of the sampling.</param>
public sealed record DistillationSettings(
    int Sequences, int TokensPerSequence, int Batch, int PromptBytes, SamplingParams Sampling, ulong Seed)
{
    /// <summary>Checks the settings; returns a problem or null.</summary>
    public string? Problem() =>
        Sequences < 1 ? "at least one sequence is needed"
        : TokensPerSequence < 2 ? "each sequence needs at least two tokens"
        : Batch < 1 ? "the batch must hold at least one sequence"
        : PromptBytes < 0 ? "prompts cannot have a negative length"
        : null;
}

/// <summary>
/// Distils an n-gram draft from a target: samples completions of prompts from the target (batched through
/// <see cref="ILanguageModel.FeedBatch"/>), then trains a Kneser–Ney model on the target's own output, so the draft
/// learns what the target says rather than what the corpus says (sequence-level distillation). At byte level the
/// prompts are corpus records and the draft predicts the 256 bytes, its vocabulary padded to the target's; at token
/// level the prompts are token ids (BOS alone, say) and the draft predicts the target's whole vocabulary.
/// </summary>
public static class DraftDistiller
{
    /// <summary>
    /// Samples the distillation records: one byte array per completion (tokens after the prompt). <paramref name="progress"/>
    /// gets the target positions sampled so far (of Sequences × TokensPerSequence) after every step of every batch.
    /// </summary>
    public static List<byte[]> Sample(ILanguageModel target, IReadOnlyList<byte[]> corpusRecords, DistillationSettings settings, Action<long>? progress = null) =>
        [.. ForEachPosition(target, BytePrompts(corpusRecords, settings), KneserNeyModel.VocabSize, settings, progress, null).Select(r => r.Select(t => (byte)t).ToArray())];

    /// <summary>Byte prompts: the first <see cref="DistillationSettings.PromptBytes"/> bytes of each non-empty record.</summary>
    public static List<int[]> BytePrompts(IReadOnlyList<byte[]> corpusRecords, DistillationSettings settings)
    {
        ArgumentNullException.ThrowIfNull(corpusRecords);
        ArgumentNullException.ThrowIfNull(settings);
        var prompts = corpusRecords.Where(r => r.Length > 0)
            .Select(r => r.AsSpan(0, Math.Min(Math.Max(1, settings.PromptBytes), r.Length)).ToArray().Select(b => (int)b).ToArray()).ToList();
        if (prompts.Count == 0) throw new ArgumentException("The corpus holds no non-empty record to prompt with.", nameof(corpusRecords));
        return prompts;
    }

    /// <summary>
    /// Samples completions and calls <paramref name="observe"/> at each position with (completion index within its
    /// batch, prompt, the target's logits there, the token sampled); returns the completions.
    /// </summary>
    private static List<int[]> ForEachPosition(
        ILanguageModel target, List<int[]> prompts, int live, DistillationSettings settings, Action<long>? progress, Action<int, int[], float[], int>? observe)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Problem() is { } problem) throw new ArgumentException(problem, nameof(settings));
        if (prompts.Count == 0 || prompts.Any(p => p.Length == 0)) throw new ArgumentException("Every prompt needs at least one token.", nameof(prompts));

        var vocab = target.VocabSize;
        var records = new List<int[]>(settings.Sequences);
        for (int start = 0; start < settings.Sequences; start += settings.Batch)
        {
            int n = Math.Min(settings.Batch, settings.Sequences - start);
            long before = (long)start * settings.TokensPerSequence;
            records.AddRange(SampleBatch(target, prompts, start, n, vocab, live, settings, observe is null ? null : (i, p, l, t) => observe(start + i, p, l, t),
                progress is null ? null : steps => progress(before + ((long)steps * n))));
        }

        return records;
    }

    /// <summary>
    /// Distils an order-<paramref name="order"/> draft into <paramref name="outDir"/>. At every sampled position the
    /// target's whole next-token distribution (under the settings' sampling) is added to the counts of each k-gram
    /// context, scaled by <see cref="CountScale"/>: the draft then estimates E[P(x | full context) | last k-1 tokens]
    /// of the untempered distribution (both models are tempered alike when serving),
    /// which is what maximises the expected acceptance Σ min(P, Q) for a draft of that order far better than
    /// counting the sampled tokens alone. Returns the manifest and the number of target positions seen.
    /// </summary>
    public static (ModelManifest Manifest, long Positions) Distil(
        ILanguageModel target, byte[] corpus, string corpusName, int order, string outDir, DistillationSettings settings, Action<long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        var (manifest, positions, _) = DistilCore(target, BytePrompts(NgramCorpus.SplitRecords(corpus), settings), KneserNeyModel.VocabSize,
            $"distilled:{corpusName}", order, outDir, settings, null, progress);
        return (manifest, positions);
    }

    /// <summary>
    /// Token level: distils an order-<paramref name="order"/> draft over the target's whole vocabulary from completions
    /// of <paramref name="prompts"/> (token ids; BOS alone gives free-running text). <paramref name="companions"/>
    /// (role → file: the target's tokenizer.json and configuration files) are copied into the draft's directory, so it
    /// carries the same tokenizer and BOS/EOS. Returns the manifest and the number of target positions seen.
    /// </summary>
    public static (ModelManifest Manifest, long Positions) DistilTokens(
        ILanguageModel target, IReadOnlyList<int[]> prompts, string sourceName, int order, string outDir, DistillationSettings settings,
        IReadOnlyDictionary<string, string>? companions, Action<long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prompts);
        var (manifest, positions, _) = DistilCore(target, [.. prompts], target.VocabSize, $"distilled:{sourceName}", order, outDir, settings, companions, progress);
        return (manifest, positions);
    }

    private static (ModelManifest Manifest, long Positions, List<int[]> Records) DistilCore(
        ILanguageModel target, List<int[]> prompts, int live, string corpusName, int order, string outDir, DistillationSettings settings,
        IReadOnlyDictionary<string, string>? companions, Action<long>? progress)
    {
        int maxOrder = KneserNeyModel.MaxOrder(live);
        if (order < 2 || order > maxOrder) throw new ArgumentOutOfRangeException(nameof(order), order, $"Order must be 2..{maxOrder} for {live} tokens.");
        var soft = new Dictionary<long, double>[order];
        for (int k = 0; k < order; k++) soft[k] = [];
        var probs = new float[target.VocabSize];
        var histories = new Dictionary<int, List<int>>();
        long positions = 0;
        var records = ForEachPosition(target, prompts, live, settings, progress, (i, prompt, logits, token) =>
        {
            if (!histories.TryGetValue(i, out var history))
            {
                histories[i] = history = [.. prompt];
            }

            Distribution.FromLogits(logits, Untempered, probs); // the draft is tempered like the target when it serves
            var h = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history);
            for (int x = 0; x < live; x++)
            {
                double mass = probs[x] * CountScale;
                if (mass < MinMass) continue;
                Add(soft[0], x, mass);
                for (int k = 2; k <= order; k++) Add(soft[k - 1], KneserNeyModel.NgramKey(h, k, x, live), mass);
            }

            history.Add(token);
            positions++;
        });

        var raw = new Dictionary<long, int>[order];
        for (int k = 0; k < order; k++)
        {
            raw[k] = new Dictionary<long, int>(soft[k].Count);
            foreach (var (key, mass) in soft[k])
            {
                var c = (int)Math.Round(mass);
                if (c > 0) raw[k][key] = c;
            }
        }

        var model = KneserNeyModel.FromCounts(raw, order, live);
        var manifest = NgramModelBuilder.Write(model, "draft", outDir, target.VocabSize, Describe(records, corpusName, live),
            live == KneserNeyModel.VocabSize ? Math.Round(model.BitsPerToken(records), 4) : null, companions);
        return (manifest, positions, records);
    }

    /// <summary>Name, size and SHA-256 of the sampled text: the bytes themselves at byte level, int32 ids otherwise.</summary>
    private static CorpusInfo Describe(List<int[]> records, string name, int live)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        long size = 0;
        foreach (var r in records)
        {
            var bytes = live == KneserNeyModel.VocabSize ? r.Select(t => (byte)t).ToArray() : System.Runtime.InteropServices.MemoryMarshal.AsBytes(r.AsSpan()).ToArray();
            sha.AppendData(bytes);
            size += bytes.Length;
        }

        return new CorpusInfo(name, size, Convert.ToHexStringLower(sha.GetHashAndReset()));
    }

    private static readonly SamplingParams Untempered = new(1f, 0, 1f);

    /// <summary>Pseudo-counts per unit of probability mass at one position.</summary>
    public const double CountScale = 64;

    /// <summary>Mass below which a token's share of one position is not counted (keeps the tables sparse).</summary>
    private const double MinMass = 1e-3;

    private static void Add(Dictionary<long, double> d, long key, double value)
    {
        ref var slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(d, key, out _);
        slot += value;
    }

    /// <summary>
    /// The expected acceptance rate α of <paramref name="draft"/> against <paramref name="target"/> under the settings'
    /// sampling: the mean over target-sampled positions of Σ_x min(P(x), Q(x)), on completions whose prompts and seed
    /// differ from those the draft was distilled from (held out).
    /// </summary>
    /// <param name="progress">Gets the held-out positions measured so far (of Sequences × TokensPerSequence).</param>
    public static double Agreement(ILanguageModel target, ILanguageModel draft, IReadOnlyList<byte[]> corpusRecords, DistillationSettings settings, Action<long>? progress = null) =>
        Agreement(target, draft, BytePrompts(corpusRecords, settings), KneserNeyModel.VocabSize, settings, progress);

    /// <summary>As above, on completions of token <paramref name="prompts"/>; the target may predict ids below <paramref name="live"/>.</summary>
    public static double Agreement(ILanguageModel target, ILanguageModel draft, IReadOnlyList<int[]> prompts, int live, DistillationSettings settings, Action<long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(draft);
        ArgumentNullException.ThrowIfNull(prompts);
        if (draft.VocabSize != target.VocabSize)
            throw new ArgumentException($"The draft has {draft.VocabSize} tokens and the target {target.VocabSize}.", nameof(draft));
        if (prompts.Count == 0 || prompts.Any(p => p.Length == 0)) throw new ArgumentException("Every prompt needs at least one token.", nameof(prompts));
        var promptList = prompts.ToList();
        var vocab = target.VocabSize;
        var p = new float[vocab];
        var q = new float[vocab];
        double sum = 0;
        long count = 0;
        var heldOut = settings with { Seed = DeterministicRandom.Mix(settings.Seed ^ 0x5EED) };
        for (int start = 0; start < settings.Sequences; start += settings.Batch)
        {
            int n = Math.Min(settings.Batch, settings.Sequences - start);
            var drafts = new IModelSequence?[n];
            var draftLogits = new float[n][];
            long before = (long)start * settings.TokensPerSequence;
            try
            {
                SampleBatch(target, promptList, settings.Sequences + start, n, vocab, live, heldOut, (i, prompt, logits, token) =>
                {
                    var seq = drafts[i] ??= draft.CreateSequence();
                    var qLogits = draftLogits[i] ??= new float[vocab];
                    if (seq.Length == 0) seq.Feed(prompt, qLogits);
                    Distribution.FromLogits(logits, settings.Sampling, p);
                    Distribution.FromLogits(qLogits, settings.Sampling, q);
                    double overlap = 0;
                    for (int x = 0; x < vocab; x++) overlap += Math.Min(p[x], q[x]);
                    sum += overlap;
                    count++;
                    seq.Feed([token], qLogits);
                }, progress is null ? null : steps => progress(before + ((long)steps * n)));
            }
            finally
            {
                foreach (var d in drafts) d?.Dispose();
            }
        }

        return count == 0 ? 0 : sum / count;
    }

    private static int[][] SampleBatch(
        ILanguageModel target, List<int[]> prompts, int first, int n, int vocab, int live, DistillationSettings s, Action<int, int[], float[], int>? observe,
        Action<int>? stepsDone = null)
    {
        var sequences = new IModelSequence[n];
        var logits = new float[n][];
        var outputs = new int[n][];
        var sessions = new ulong[n];
        var lengths = new int[n];
        var promptTokens = new int[n][];
        var probs = new float[vocab];
        try
        {
            var batch = new FeedRequest[n];
            for (int i = 0; i < n; i++)
            {
                var prompt = prompts[(first + i) % prompts.Count];
                sequences[i] = target.CreateSequence();
                logits[i] = new float[vocab];
                outputs[i] = new int[s.TokensPerSequence];
                sessions[i] = DeterministicRandom.SessionKey($"distil-{first + i}");
                lengths[i] = prompt.Length;
                promptTokens[i] = prompt;
                batch[i] = new FeedRequest(sequences[i], prompt, logits[i]);
            }

            target.FeedBatch(batch);
            var next = new int[n][];
            for (int t = 0; t < s.TokensPerSequence; t++)
            {
                for (int i = 0; i < n; i++)
                {
                    int token = Next(logits[i], probs, s, sessions[i], lengths[i] + t);
                    if (token >= live)
                        throw new InvalidOperationException(live == KneserNeyModel.VocabSize
                            ? $"The target predicted token {token}: only byte-level targets (ids 0..255 live) can be distilled into a byte n-gram draft; distil at token level."
                            : $"The target predicted token {token}, outside the draft's {live} tokens.");
                    observe?.Invoke(i, promptTokens[i], logits[i], token);
                    outputs[i][t] = token;
                    next[i] = [token];
                    batch[i] = new FeedRequest(sequences[i], next[i], logits[i]);
                }

                if (t + 1 < s.TokensPerSequence) target.FeedBatch(batch);
                stepsDone?.Invoke(t + 1);
            }

            return outputs;
        }
        finally
        {
            foreach (var seq in sequences) seq?.Dispose();
        }
    }

    private static int Next(float[] logits, float[] probs, DistillationSettings s, ulong session, int position)
    {
        if (s.Sampling.IsGreedy) return Distribution.ArgMax(logits);
        Distribution.FromLogits(logits, s.Sampling, probs);
        return Distribution.Sample(probs, DeterministicRandom.Uniform(s.Seed, session, 0, position, RandomStream.Autoregressive));
    }
}

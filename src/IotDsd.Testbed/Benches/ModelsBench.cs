using System.Globalization;
using IotDsd.Core.Models;
using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;
using IotDsd.Testbed.Reporting;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The measurements behind <c>iotdsd bench models</c>: draft decode rate, managed bytes per decode step, verification
/// latency against γ and batched verification against the batch size, and the target's pass cost split into parts.
/// </summary>
internal static class ModelsBench
{
    /// <summary>Measures the pair and writes the tables to <paramref name="o"/>; progress goes to stderr.</summary>
    public static void Run(ILanguageModel draft, ILanguageModel target, InferenceOptions options, int n, int[] sizes, TextWriter o)
    {
        var progress = new ProgressReporter("bench models");
        progress.Start($"timing decode, verification and batches (medians of {n})", 2 + 8 + sizes.Length, "measurements");
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"provider {options.Provider}, {options.IntraOpThreads} intra-op thread(s), {Environment.ProcessorCount} cores, medians of {n}"));
        o.WriteLine($"draft {draft.Name}, target {target.Name}");
        o.WriteLine();
        o.WriteLine("| model | decode tokens/s | ms/token | managed bytes/step |");
        o.WriteLine("|---|---|---|---|");
        foreach (var m in (ILanguageModel[])[draft, target])
        {
            var d = ModelBenchmark.Decode(m, Math.Max(32, n * 4));
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {m.Name} | {d.TokensPerSecond:0.0} | {d.MillisPerToken:0.000} | {d.ManagedBytesPerStep:0} |"));
            progress.Advance();
        }

        o.WriteLine();
        o.WriteLine("| γ | verify ms (target, prefix 64) | ms per verified token |");
        o.WriteLine("|---|---|---|");
        for (int gamma = 1; gamma <= 8; gamma++)
        {
            var ms = ModelBenchmark.VerifyMillis(target, 64, gamma, n);
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {gamma} | {ms:0.000} | {ms / (gamma + 1):0.000} |"));
            progress.Advance();
        }

        o.WriteLine();
        o.WriteLine("| batch | batched ms (γ=4) | one-at-a-time ms | speed-up | tokens/s |");
        o.WriteLine("|---|---|---|---|---|");
        foreach (var b in sizes)
        {
            var r = ModelBenchmark.Batch(target, b, 4, n);
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {b} | {r.Millis:0.000} | {r.SequentialMillis:0.000} | {r.SequentialMillis / r.Millis:0.00}x | {r.TokensPerSecond:0} |"));
            progress.Advance();
        }

        progress.Done();
        var most = Math.Max(2, sizes.Max());
        PrintPassCost(o, ModelBenchmark.PassCost(target, n, [1, Math.Max(2, most / 4), most], [1, 3, 5]));
    }

    /// <summary>
    /// Verification cost against the cached context: for every (batch, context) the median time of one batched γ
    /// verification pass, one JSON object a line (<c>batch</c>, <c>context</c>, <c>gamma</c>, <c>verify_ms</c>, <c>provider</c>,
    /// <c>threads</c>, <c>kv</c>: where the KV caches lived, <c>kv_slot_bytes</c>: one session's slot of the pool) or a table.
    /// </summary>
    public static void RunContexts(ILanguageModel target, InferenceOptions options, int n, int[] sizes, int[] contexts, int gamma, bool json, TextWriter o)
    {
        // A context whose verification pass would run past the model's positions is refused before anything is printed.
        if (target is IotDsd.Inference.Transformer.TransformerModel t && contexts.Max() + gamma + 1 > t.MaxPositions)
        {
            throw new ArgumentException($"--contexts {contexts.Max()} with --gamma {gamma} needs {contexts.Max() + gamma + 1} positions; " +
                $"model '{t.Name}' has {t.MaxPositions} (the largest context is {t.MaxPositions - gamma - 1}).");
        }

        var progress = new ProgressReporter("bench models");
        progress.Start($"timing γ={gamma} verification against the cached context (medians of {n})", sizes.Length * contexts.Length, "measurements");
        bool headed = json; // the table's header goes out with its first row, so a point that cannot run leaves stdout empty
        foreach (var b in sizes)
        {
            foreach (var c in contexts)
            {
                var ms = ModelBenchmark.ContextVerifyMillis(target, b, c, gamma, n);
                // The pool keeps its shape after the point's sessions end: one slot is what a session held.
                var (place, slotBytes) = target is IotDsd.Inference.Transformer.TransformerModel tm && tm.KvPoolState is var pool
                    ? (tm.KvPlace, pool.Slots > 0 ? pool.Bytes / pool.Slots : 0)
                    : ("per-session", 0L);
                if (!headed)
                {
                    o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"provider {options.Provider}, {options.IntraOpThreads} intra-op thread(s), {Environment.ProcessorCount} cores, medians of {n}, target {target.Name}"));
                    o.WriteLine();
                    o.WriteLine($"| batch | cached tokens each | verify ms (γ={gamma}) |");
                    o.WriteLine("|---|---|---|");
                    headed = true;
                }

                o.WriteLine(json
                    ? string.Create(CultureInfo.InvariantCulture, $"{{\"batch\":{b},\"context\":{c},\"gamma\":{gamma},\"verify_ms\":{ms:0.000},\"provider\":\"{options.Provider.ToString().ToLowerInvariant()}\",\"threads\":{options.IntraOpThreads},\"kv\":\"{place}\",\"kv_slot_bytes\":{slotBytes}}}")
                    : string.Create(CultureInfo.InvariantCulture, $"| {b} | {c} | {ms:0.000} |"));
                progress.Advance();
            }
        }

        progress.Done();
    }

    /// <summary>
    /// The target's pass cost split into fixed, per-session and per-token parts, and what it implies for verification
    /// against plain decoding at a large batch: verifying γ drafts per session costs (s + t(γ+1)) a session where
    /// plain decoding costs (s + t) a token, so a round must commit more than their ratio to pay.
    /// </summary>
    private static void PrintPassCost(TextWriter o, ModelBenchmark.PassCostFit fit)
    {
        o.WriteLine();
        o.WriteLine("| sessions | tokens each | pass ms | fit ms |");
        o.WriteLine("|---|---|---|---|");
        foreach (var p in fit.Points)
        {
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {p.Sessions} | {p.TokensEach} | {p.Millis:0.000} | {fit.Millis(p.Sessions, p.Sessions * p.TokensEach):0.000} |"));
        }

        o.WriteLine();
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pass ≈ {fit.FixedMillis:0.00} ms + {fit.PerSessionMillis:0.000} ms × sessions + {fit.PerTokenMillis:0.000} ms × tokens; arithmetic reaches the fixed part at ≈ {fit.MemoryBoundTokens:0} tokens a pass"));
        var plain = fit.PerSessionMillis + fit.PerTokenMillis;
        if (plain > 0)
        {
            var needed = Enumerable.Range(1, 4).Select(g => string.Create(CultureInfo.InvariantCulture,
                $"γ={g}: {(fit.PerSessionMillis + (fit.PerTokenMillis * (g + 1))) / plain:0.00}"));
            o.WriteLine($"at a large batch a round must commit more tokens than this to beat plain decoding: {string.Join(", ", needed)}");
        }
        else
        {
            o.WriteLine("at a large batch: the fit gave no positive per-session and per-token cost (the timings were too noisy to split); run again with more --iterations on an idle machine");
        }
    }

    /// <summary>The preset pair's directories in the model cache, built there first if missing (announced on <paramref name="log"/>).</summary>
    public static (string Draft, string Target) EnsurePreset(string preset, TextWriter log)
    {
        if (!TransformerConfig.PresetNames.Contains(preset))
        {
            throw new TestbedException($"--preset must be {string.Join(" or ", TransformerConfig.PresetNames)}, got '{preset}'");
        }

        var root = DefaultModels.DefaultCacheRoot();
        string Dir(string role) => Path.Combine(root, $"transformer-{preset}-{role}-seed1-v1");
        foreach (var role in (string[])["draft", "target"])
        {
            if (!ModelDirectory.IsValid(Dir(role)))
            {
                log.WriteLine($"building the {preset} {role} into {Dir(role)} ...");
                TransformerModelBuilder.Build(preset, role, 1, Dir(role), DefaultModels.Corpus.Span, DefaultModels.CorpusName);
            }
        }

        return (Dir("draft"), Dir("target"));
    }
}

using System.CommandLine;
using System.Globalization;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Distillation;
using IotDsd.Inference.Llama;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd models build</c>: writes a model directory (ONNX file, manifest, tokenizer) that any command can load
/// with --draft/--target.
/// </summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        var kind = new Option<string>("--kind") { Description = "Model kind: ngram or transformer.", DefaultValueFactory = _ => "ngram" };
        var role = new Option<string>("--role") { Description = "draft or target.", Required = true };
        var order = new Option<int?>("--order") { Description = "ngram: order, 2-7 (default: 4 for a draft, 5 for a target)." };
        var preset = new Option<string>("--preset") { Description = "transformer: tiny (tests) or small (GPT-2-small shape); Llama shapes with random weights: llama-tiny (tests), llama-300m or llama-1b. A draft keeps the target's first quarter of layers.", DefaultValueFactory = _ => "tiny" };
        var seed = new Option<ulong>("--seed") { Description = "transformer: weight seed; build draft and target with the same seed.", DefaultValueFactory = _ => 1UL };
        var corpus = new Option<string?>("--corpus") { Description = "UTF-8 text file to train (ngram) or fit the output layer (transformer) on, records separated by lines holding '%' (default: the shipped corpus)." };
        var residual = new Option<float?>("--residual-scale") { Description = "transformer: each block's contribution to the residual stream relative to the embedding (default 0.35); smaller makes the deep layers matter less, so a shallow or n-gram draft agrees more often." };
        var vocab = new Option<int?>("--vocab-size") { Description = "ngram: pad the byte vocabulary to this size (at least 256), to pair with a target whose vocabulary is padded, such as the small transformer preset (50257)." };
        var output = new Option<string>("--out") { Description = "Directory to write.", Required = true };
        var build = new Command("build", "Build a model directory.") { kind, role, order, preset, seed, corpus, residual, vocab, output };
        build.SetAction(result =>
        {
            var k = result.GetValue(kind);
            if (k is not ("ngram" or "transformer"))
            {
                throw new CliError($"--kind must be ngram or transformer, got '{k}'");
            }

            var r = result.GetValue(role);
            if (r is not ("draft" or "target"))
            {
                throw new CliError($"--role must be draft or target, got '{r}'");
            }

            if (result.GetValue(preset) is { } llama && LlamaPresets.Names.Contains(llama))
            {
                new ProgressReporter("models build").Step($"building {llama} ({r}) from random float32 weights, seed {result.GetValue(seed)}");
                var lm = LlamaPresets.Build(llama, r, result.GetValue(seed), result.GetValue(output)!);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {result.GetValue(output)}: {lm.Name} ({lm.Transformer!.Layers} layers, {lm.Transformer.Hidden} wide, vocabulary {lm.VocabSize}, float32)"));
                return 0;
            }

            if (result.GetValue(preset) is { } named && named.StartsWith("llama", StringComparison.OrdinalIgnoreCase))
            {
                throw new CliError($"--preset {named} is not a Llama preset; known: {string.Join(", ", LlamaPresets.Names)}");
            }

            var corpusPath = result.GetValue(corpus);
            var text = ReadCorpus(corpusPath);

            var corpusName = corpusPath is null ? DefaultModels.CorpusName : Path.GetFileName(corpusPath);
            var dir = result.GetValue(output)!;
            if (k == "transformer")
            {
                var p = result.GetValue(preset)!;
                if (!TransformerConfig.PresetNames.Contains(p))
                {
                    throw new CliError($"--preset must be {string.Join(" or ", TransformerConfig.PresetNames)}, got '{p}'");
                }

                if (text.Length < 2)
                {
                    throw new CliError($"--corpus {corpusPath} holds fewer than two bytes");
                }

                var config = TransformerConfig.ForPreset(p, r, result.GetValue(seed));
                if (result.GetValue(residual) is float scale)
                {
                    if (!(scale >= 0f && scale <= 4f))
                    {
                        throw new CliError(string.Create(CultureInfo.InvariantCulture, $"--residual-scale must be between 0 and 4, got {scale}"));
                    }

                    config = config with { ResidualScale = scale };
                }

                var progress = new ProgressReporter("models build");
                progress.Start($"building the {p} {r} ({config.Layers} blocks, then the output layer fitted to {corpusName})", config.Layers + 1, "steps");
                var m = TransformerModelBuilder.Build(config, r, dir, text, corpusName, layers => progress.Report(layers));
                progress.Done();
                var c = m.Transformer!;
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {dir}: {m.Name} ({c.Layers} layers, {c.Hidden} wide, {c.Heads} heads, vocabulary {c.VocabSize}, seed {c.Seed})"));
                return 0;
            }

            var n = result.GetValue(order) ?? (r == "draft" ? DefaultModels.DraftOrder : DefaultModels.TargetOrder);
            if (n is < 2 or > 7)
            {
                throw new CliError($"--order must be between 2 and 7, got {n}");
            }

            var v = result.GetValue(vocab) ?? KneserNeyModel.VocabSize;
            if (v is < KneserNeyModel.VocabSize or > NgramOnnxModel.MaxVocabSize)
            {
                throw new CliError($"--vocab-size must be between {KneserNeyModel.VocabSize} and {NgramOnnxModel.MaxVocabSize}, got {v}");
            }

            new ProgressReporter("models build").Step($"counting {n}-grams of {corpusName} ({text.Length} bytes) and compiling them to ONNX");
            var manifest = NgramModelBuilder.Build(text, n, r, dir, corpusName, v);
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {dir}: {manifest.Name}, held-out {manifest.HeldoutBitsPerByte:0.000} bits/byte"));
            return 0;
        });
        return new Command("models", "Model directories.") { build, CreateDistill(corpus, seed), ModelsTokenizeCommand.Create(), CreateImport() };
    }

    private static Command CreateImport()
    {
        var format = new Option<string>("--format") { Description = "Format of the files to import: llama2c (a llama2.c checkpoint and tokenizer).", Required = true };
        var checkpoint = new Option<string>("--checkpoint") { Description = "llama2.c checkpoint (.bin: seven int32 header, then float32 weights).", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "llama2.c tokenizer (tokenizer.bin, tok512.bin, ...) of that checkpoint.", Required = true };
        var output = new Option<string>("--out") { Description = "Directory to write.", Required = true };
        var name = new Option<string?>("--name") { Description = "Model name (default: the checkpoint's file name)." };
        var import = new Command("import", "Import a model from another project's files: writes model.onnx, tokenizer.json, config.json, generation_config.json, tokenizer_config.json and manifest.json.")
        {
            format, checkpoint, tokenizer, output, name,
        };
        import.SetAction(result =>
        {
            var f = result.GetValue(format);
            if (f != Inference.Llama.Llama2cImporter.Format)
            {
                throw new CliError($"--format must be {Inference.Llama.Llama2cImporter.Format}, got '{f}'");
            }

            var dir = result.GetValue(output)!;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var m = Inference.Llama.Llama2cImporter.Import(result.GetValue(checkpoint)!, result.GetValue(tokenizer)!, dir, result.GetValue(name));
            var c = m.Transformer!;
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {dir}: {m.Name} ({c.Layers} layers, {c.Hidden} wide, {c.Heads} heads, vocabulary {c.VocabSize}, context {c.MaxPositions}) in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds:0.00} s"));
            return 0;
        });
        return import;
    }

    private static Command CreateDistill(Option<string?> corpus, Option<ulong> seed)
    {
        var target = new Option<string>("--target") { Description = "Target model directory to distil from: a byte-level vocabulary (possibly padded) gives a byte n-gram draft, any other a token n-gram over the target's vocabulary, started from BOS (or from the corpus records, encoded, where the model has no BOS).", Required = true };
        var order = new Option<int>("--order") { Description = "Order of the distilled n-gram draft, 2-7 (fewer for large vocabularies: the keys must fit 64 bits).", DefaultValueFactory = _ => 3 };
        var sequences = new Option<int>("--sequences") { Description = "Completions sampled from the target.", DefaultValueFactory = _ => 256 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens per completion.", DefaultValueFactory = _ => 256 };
        var batch = new Option<int>("--batch") { Description = "Completions decoded together in one forward pass.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature the draft will serve; 0 is greedy.", DefaultValueFactory = _ => 0.8f };
        var heldOut = new Option<int>("--held-out") { Description = "Held-out completions on which the expected acceptance rate is measured (0: skip).", DefaultValueFactory = _ => 32 };
        var output = new Option<string>("--out") { Description = "Directory to write the draft to; with --evaluate-only, the draft to measure.", Required = true };
        var evaluateOnly = new Option<bool>("--evaluate-only") { Description = "Only measure the expected acceptance rate of the draft already in --out against --target." };
        var distill = new Command("distill", "Distil an n-gram draft from a target: sample the target's own text, train on it, and report the expected acceptance rate.")
        {
            target, order, sequences, tokens, batch, temperature, heldOut, corpus, seed, output, evaluateOnly,
        };
        distill.SetAction(result =>
        {
            var n = result.GetValue(order);
            if (n is < 2 or > 7) throw new CliError($"--order must be between 2 and 7, got {n}");
            var t = result.GetValue(temperature);
            if (!(t >= 0f)) throw new CliError($"--temperature must be 0 or more, got {t}");
            var held = result.GetValue(heldOut);
            if (held < 0) throw new CliError($"--held-out must be 0 or more, got {held}");
            var settings = new DistillationSettings(result.GetValue(sequences), result.GetValue(tokens), result.GetValue(batch), 16,
                t == 0f ? SamplingParams.Greedy : new SamplingParams(t, 0, 1f), result.GetValue(seed));
            if (settings.Problem() is { } problem) throw new CliError($"distill: {problem}");
            var corpusPath = result.GetValue(corpus);
            var text = ReadCorpus(corpusPath);

            var dir = result.GetValue(output)!;
            var targetDir = result.GetValue(target)!;
            var progress = new ProgressReporter("distill");
            progress.Step($"loading the target {targetDir}");
            using var pair = ModelPair.Load(null, targetDir, needDraft: false);
            var model = pair.Target;
            var live = Math.Min(pair.Tokenizer.VocabSize, model.VocabSize);
            var tokenLevel = live > KneserNeyModel.VocabSize;
            if (tokenLevel && n > KneserNeyModel.MaxOrder(live))
            {
                throw new CliError($"--order must be at most {KneserNeyModel.MaxOrder(live)} for a vocabulary of {live} tokens, got {n}");
            }

            var prompts = tokenLevel ? TokenPrompts(pair, text) : null;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            if (result.GetValue(evaluateOnly))
            {
                held = Math.Max(held, 1);
            }
            else if (tokenLevel)
            {
                progress.Start(
                    string.Create(CultureInfo.InvariantCulture, $"sampling {settings.Sequences} completions of {settings.TokensPerSequence} tokens from the target, {settings.Batch} at a time, and counting {n}-grams of tokens"),
                    (long)settings.Sequences * settings.TokensPerSequence,
                    "positions");
                var (manifest, sampled) = DraftDistiller.DistilTokens(model, prompts!, pair.Target.Name, n, dir, settings, Companions(targetDir), progress.Report);
                progress.Done();
                var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"wrote {dir}: {manifest.Name} over {live} tokens, from {sampled} target tokens in {seconds:0.0} s ({sampled / seconds:0} tokens/s)"));
            }
            else
            {
                Distil(model, text, corpusPath, n, dir, settings, started, progress);
            }

            if (held > 0)
            {
                using var draft = ModelPair.Load(dir, null, needDraft: true, needTarget: false).Draft!;
                if (draft.VocabSize != model.VocabSize)
                {
                    throw new CliError($"the draft in {dir} has {draft.VocabSize} tokens and the target {model.VocabSize}");
                }

                progress.Start($"measuring the acceptance rate on {held} held-out completions", (long)held * settings.TokensPerSequence, "positions");
                var alpha = tokenLevel
                    ? DraftDistiller.Agreement(model, draft, prompts!, live, settings with { Sequences = held }, progress.Report)
                    : DraftDistiller.Agreement(model, draft, NgramCorpus.SplitRecords(text), settings with { Sequences = held }, progress.Report);
                progress.Done();
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"expected acceptance rate α = {alpha:0.000} at temperature {t} ({held} held-out completions of {settings.TokensPerSequence} tokens)"));
            }

            return 0;
        });
        return distill;
    }

    private static void Distil(Core.Models.ILanguageModel model, byte[] text, string? corpusPath, int n, string dir, DistillationSettings settings, long started, ProgressReporter progress)
    {
        progress.Start(
            string.Create(CultureInfo.InvariantCulture, $"sampling {settings.Sequences} completions of {settings.TokensPerSequence} tokens from the target, {settings.Batch} at a time, and counting {n}-grams"),
            (long)settings.Sequences * settings.TokensPerSequence,
            "positions");
        var (manifest, sampled) = DraftDistiller.Distil(model, text, corpusPath is null ? DefaultModels.CorpusName : Path.GetFileName(corpusPath), n, dir, settings, progress.Report);
        progress.Done();
        var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {dir}: {manifest.Name}, vocabulary {manifest.VocabSize}, from {sampled} target tokens in {seconds:0.0} s ({sampled / seconds:0} tokens/s)"));
    }

    /// <summary>Token-level prompts: BOS alone where the model has one, else the first bytes of each corpus record, encoded.</summary>
    private static List<int[]> TokenPrompts(ModelPair pair, byte[] corpus)
    {
        if (pair.Specials.Bos is { } bos)
        {
            return [[bos]];
        }

        var prompts = NgramCorpus.SplitRecords(corpus).Where(r => r.Length > 0)
            .Select(r => pair.Tokenizer.Encode(System.Text.Encoding.UTF8.GetString(r, 0, Math.Min(16, r.Length)))).Where(p => p.Length > 0).ToList();
        return prompts.Count > 0 ? prompts : throw new CliError("the target has no BOS token and the corpus gives no prompt to start from");
    }

    /// <summary>The target's tokenizer and configuration files, to copy beside a token-level draft.</summary>
    private static Dictionary<string, string> Companions(string targetDir)
    {
        var manifest = ModelDirectory.ReadManifest(targetDir);
        var files = manifest.Files.Where(f => f.Key != ModelManifest.ModelFileKey)
            .ToDictionary(f => f.Key, f => ModelDirectory.FilePath(targetDir, manifest, f.Key));
        foreach (var (key, file) in new[] { ("config", "config.json"), ("generation_config", "generation_config.json"), ("tokenizer_config", "tokenizer_config.json") })
        {
            var path = Path.Combine(targetDir, file);
            if (!files.ContainsKey(key) && File.Exists(path))
            {
                files[key] = path;
            }
        }

        return files;
    }

    /// <summary>The corpus file's bytes, or the shipped corpus when no path is given.</summary>
    private static byte[] ReadCorpus(string? path)
    {
        try
        {
            return path is null ? DefaultModels.Corpus.ToArray() : File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"cannot read --corpus {path}: {ex.Message}");
        }
    }
}

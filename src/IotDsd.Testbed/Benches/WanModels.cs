using IotDsd.Core.Sampling;
using IotDsd.Inference.Distillation;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;

namespace IotDsd.Testbed.Benches;

/// <summary>
/// The model pairs of <c>iotdsd bench wan</c>, built on first use under the model cache (<c>wan/</c>) from the shipped
/// corpus: nothing is downloaded. Each directory is built beside its place and renamed into it, so an interrupted build
/// leaves nothing half-written.
/// </summary>
internal static class WanModels
{
    /// <summary>The weight seed of every built transformer.</summary>
    public const ulong Seed = 1;

    /// <summary>The n-gram order of the drafts padded to a target's vocabulary.</summary>
    public const int DraftOrder = 4;

    /// <summary>The compute-realistic transformer targets Table A may use.</summary>
    public static readonly string[] RealisticPresets = ["small", "tiny"];

    /// <summary>
    /// Table A's compute-realistic pair: the builder's <paramref name="preset"/> target (GPT-2-small shape for
    /// <c>small</c>) and an order-4 byte draft distilled from its greedy text (64 completions of 128 bytes from corpus
    /// prompts), padded to the target's vocabulary.
    /// </summary>
    public static (string DraftDir, string TargetDir, string Name) Realistic(string preset, string cacheRoot, Action<string> step)
    {
        var target = Path.Combine(cacheRoot, "wan", $"transformer-{preset}-target-seed{Seed}");
        var draft = Path.Combine(cacheRoot, "wan", $"transformer-{preset}-distilled-o{DraftOrder}-seed{Seed}");
        BuildInto(target, step, $"building the {preset} transformer target", dir =>
            TransformerModelBuilder.Build(TransformerConfig.ForPreset(preset, "target", Seed), "target", dir, DefaultModels.Corpus.Span, DefaultModels.CorpusName));
        BuildInto(draft, step, $"distilling an order-{DraftOrder} draft from the {preset} target (greedy, 64 × 128 positions)", dir =>
        {
            using var model = ModelDirectory.Load(target);
            var settings = new DistillationSettings(64, 128, 32, 16, SamplingParams.Greedy, Seed);
            DraftDistiller.Distil(model, DefaultModels.Corpus.ToArray(), DefaultModels.CorpusName, DraftOrder, dir, settings);
        });
        return (draft, target, $"{preset} transformer (V = {TransformerConfig.ForPreset(preset, "target", Seed).VocabSize}) + distilled {DraftOrder}-gram");
    }

    /// <summary>
    /// Table B's pair at <paramref name="vocab"/>: null for 256 (the shipped byte n-gram pair); otherwise a builder
    /// target of the tiny shape (4 layers, 128 wide) with its embedding and output layer padded to the vocabulary, and an
    /// order-4 byte n-gram draft padded to the same size.
    /// </summary>
    public static (string DraftDir, string TargetDir)? ForVocab(int vocab, string cacheRoot, Action<string> step)
    {
        if (vocab == TransformerConfig.LiveTokens)
        {
            return null;
        }

        var target = Path.Combine(cacheRoot, "wan", $"transformer-tiny-v{vocab}-target-seed{Seed}");
        var draft = Path.Combine(cacheRoot, "wan", $"ngram-o{DraftOrder}-v{vocab}-draft");
        var config = TransformerConfig.ForPreset("tiny", "target", Seed) with { VocabSize = vocab };
        BuildInto(target, step, $"building a tiny transformer target with {vocab} ids", dir =>
            TransformerModelBuilder.Build(config, "target", dir, DefaultModels.Corpus.Span, DefaultModels.CorpusName));
        BuildInto(draft, step, $"building an order-{DraftOrder} byte n-gram draft padded to {vocab} ids", dir =>
            NgramModelBuilder.Build(DefaultModels.Corpus.ToArray(), DraftOrder, "draft", dir, DefaultModels.CorpusName, vocab));
        return (draft, target);
    }

    private static void BuildInto(string dir, Action<string> step, string what, Action<string> build)
    {
        if (ModelDirectory.IsValid(dir))
        {
            return;
        }

        step(what);
        var parent = Path.GetDirectoryName(dir)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".tmp-{Path.GetFileName(dir)}-{Guid.NewGuid():N}");
        try
        {
            build(temp);
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }

            Directory.Move(temp, dir);
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }
}

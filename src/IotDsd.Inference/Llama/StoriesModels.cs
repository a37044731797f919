using System.Security.Cryptography;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Distillation;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Llama;

/// <summary>
/// The default draft/target pair: the shipped llama2.c model stories260K (a trained Llama-architecture model over a
/// 512-token SentencePiece vocabulary) as the target, imported on first use, and an order-<see cref="DraftOrder"/>
/// token n-gram draft distilled from it — both cached under the model cache by content hash, no download.
/// </summary>
public static class StoriesModels
{
    public const string Name = "stories260K";
    public const int DraftOrder = 4;

    /// <summary>
    /// Bumped when the import or the distillation changes, so stale cache entries are not reused (2: tokenizer.json and
    /// tokenizer_config.json as Hugging Face's converter writes them; 3: the slot signature, KV pool and tree passes).
    /// </summary>
    private const int BuilderVersion = 3;

    /// <summary>
    /// The target's own version, bumped when only its graph changes (4: the graph writes the new keys and values into
    /// the KV pool; a v3 target would still run, its rows written by the pool's graph). The draft, distilled from the
    /// target's outputs, which did not change, keeps <see cref="BuilderVersion"/>.
    /// </summary>
    private const int TargetVersion = 4;

    /// <summary>Completions sampled from the target to distil the draft, and tokens in each.</summary>
    public static DistillationSettings Distillation { get; } = new(Sequences: 128, TokensPerSequence: 256, Batch: 32, PromptBytes: 0,
        Sampling: new SamplingParams(1f, 0, 1f), Seed: 260);

    private const string CheckpointResource = "IotDsd.Inference.Stories.stories260K.bin";
    private const string TokenizerResource = "IotDsd.Inference.Stories.tok512.bin";

    /// <summary>The shipped checkpoint's bytes.</summary>
    public static byte[] CheckpointBytes() => Resource(CheckpointResource);

    /// <summary>The shipped tokenizer's bytes.</summary>
    public static byte[] TokenizerBytes() => Resource(TokenizerResource);

    /// <summary>
    /// Returns the draft and target directories under <paramref name="cacheRoot"/> (default
    /// <see cref="DefaultModels.DefaultCacheRoot"/>), importing and distilling what is missing or invalid.
    /// </summary>
    public static (string DraftDir, string TargetDir) Ensure(string? cacheRoot = null, InferenceOptions? options = null)
    {
        var root = Path.GetFullPath(cacheRoot ?? DefaultModels.DefaultCacheRoot());
        var checkpoint = CheckpointBytes();
        var tokenizer = TokenizerBytes();
        var hash = Convert.ToHexStringLower(SHA256.HashData([.. checkpoint, .. tokenizer]))[..12];
        string target = Path.Combine(root, $"{Name}-target-{hash}-v{TargetVersion}");
        string draft = Path.Combine(root, $"{Name}-draft-o{DraftOrder}-{hash}-v{BuilderVersion}");
        try
        {
            Directory.CreateDirectory(root);
            DefaultModels.BuildInto(target, temp => Llama2cImporter.Import(
                Llama2cCheckpoint.Parse(checkpoint, "stories260K.bin (shipped)"), SentencePieceBin.Parse(tokenizer, "tok512.bin (shipped)"),
                "tok512.bin (shipped)", temp, Name));
            DefaultModels.BuildInto(draft, temp => Distil(target, temp, options));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException(root, $"Could not build the default models in cache '{root}': {e.Message} " +
                $"Make it writable, or point ${DefaultModels.CacheEnvironmentVariable} at a writable directory.", e);
        }

        return (draft, target);
    }

    /// <summary>Distils the draft from the target in <paramref name="targetDir"/> into <paramref name="outDir"/>.</summary>
    public static ModelManifest Distil(string targetDir, string outDir, InferenceOptions? options = null)
    {
        using ILanguageModel model = ModelDirectory.Load(targetDir, options);
        var specials = SpecialTokens.Read(targetDir);
        var manifest = ModelDirectory.ReadManifest(targetDir);
        int[] prompt = specials.Bos is { } bos ? [bos] : [0];
        var companions = manifest.Files.Where(f => f.Key != ModelManifest.ModelFileKey)
            .ToDictionary(f => f.Key, f => ModelDirectory.FilePath(targetDir, manifest, f.Key));
        return DraftDistiller.DistilTokens(model, [prompt], Name, DraftOrder, outDir, Distillation, companions).Manifest;
    }

    private static byte[] Resource(string name)
    {
        using var stream = typeof(StoriesModels).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"Embedded model file '{name}' is missing from the assembly.");
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return ms.ToArray();
    }
}

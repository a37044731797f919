using IotDsd.Core.Models;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace IotDsd.Tests.Infrastructure;

/// <summary>The shipped model pair, loaded once for the whole run (tests run one class at a time).</summary>
public static class TestEnvironment
{
    private static readonly Lazy<(ILanguageModel Draft, ILanguageModel Target, string DraftDir, string TargetDir)> Pair = new(() =>
    {
        var (draftDir, targetDir) = DefaultModels.Ensure();
        return (ModelDirectory.Load(draftDir), ModelDirectory.Load(targetDir), draftDir, targetDir);
    });

    public static ILanguageModel Draft => Pair.Value.Draft;
    public static ILanguageModel Target => Pair.Value.Target;
    public static string DraftDir => Pair.Value.DraftDir;
    public static string TargetDir => Pair.Value.TargetDir;
    public static ITokenizer Tokenizer { get; } = new ByteTokenizer();
}

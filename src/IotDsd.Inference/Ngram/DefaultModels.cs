using System.IO.Compression;
using System.Security.Cryptography;
using IotDsd.Core.Models;
using IotDsd.Inference.Models;

namespace IotDsd.Inference.Ngram;

/// <summary>
/// The default draft/target pair: Kneser–Ney byte models of order 4 (draft) and 5 (target) built from the
/// embedded English corpus on first use — no download — and cached by role, order and corpus hash.
/// </summary>
public static class DefaultModels
{
    public const int DraftOrder = 4;
    public const int TargetOrder = 5;
    public const string CorpusName = "fortunes-en";
    public const string CacheEnvironmentVariable = "IOTDSD_MODEL_CACHE";

    /// <summary>Bumped when the builder's output changes, so stale cache entries are not reused.</summary>
    private const int BuilderVersion = 3;

    private const string ResourceName = "IotDsd.Inference.Corpus.fortunes-en.txt.gz";

    private static readonly Lazy<byte[]> CorpusBytes = new(LoadCorpus);

    /// <summary>The embedded corpus, uncompressed.</summary>
    public static ReadOnlyMemory<byte> Corpus => CorpusBytes.Value;

    /// <summary>
    /// Default cache root: <c>$IOTDSD_MODEL_CACHE</c>, else <c>$XDG_CACHE_HOME/iotdsd/models</c>,
    /// else <c>~/.cache/iotdsd/models</c>.
    /// </summary>
    public static string DefaultCacheRoot()
    {
        var env = Environment.GetEnvironmentVariable(CacheEnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "iotdsd", "models");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "iotdsd", "models");
    }

    /// <summary>
    /// Returns the draft and target model directories under <paramref name="cacheRoot"/> (default
    /// <see cref="DefaultCacheRoot"/>), building the ones that are missing or invalid. Builds go to a temporary
    /// directory that is renamed into place, so concurrent processes never see a half-written model.
    /// </summary>
    public static (string DraftDir, string TargetDir) Ensure(string? cacheRoot = null)
    {
        var root = Path.GetFullPath(cacheRoot ?? DefaultCacheRoot());
        var corpus = CorpusBytes.Value;
        var hash = Convert.ToHexStringLower(SHA256.HashData(corpus))[..12];
        string draft = Path.Combine(root, $"ngram-draft-o{DraftOrder}-{hash}-v{BuilderVersion}");
        string target = Path.Combine(root, $"ngram-target-o{TargetOrder}-{hash}-v{BuilderVersion}");
        try
        {
            Directory.CreateDirectory(root);
            Parallel.Invoke(
                () => EnsureOne(corpus, DraftOrder, "draft", draft),
                () => EnsureOne(corpus, TargetOrder, "target", target));
        }
        catch (Exception e) when (Unwrap(e) is IOException or UnauthorizedAccessException)
        {
            var inner = Unwrap(e);
            throw new ModelLoadException(root, $"Could not build the default models in cache '{root}': {inner.Message} " +
                $"Make it writable, or point ${CacheEnvironmentVariable} at a writable directory.", inner);
        }
        return (draft, target);
    }

    /// <summary><see cref="Ensure"/>, then loads both models.</summary>
    public static (ILanguageModel Draft, ILanguageModel Target) Load(string? cacheRoot = null, InferenceOptions? options = null)
    {
        var (draftDir, targetDir) = Ensure(cacheRoot);
        var draft = ModelDirectory.Load(draftDir, options);
        try
        {
            return (draft, ModelDirectory.Load(targetDir, options));
        }
        catch
        {
            draft.Dispose();
            throw;
        }
    }

    private static Exception Unwrap(Exception e) =>
        e is AggregateException { InnerExceptions.Count: > 0 } a ? a.InnerExceptions[0] : e;

    private static void EnsureOne(byte[] corpus, int order, string role, string dir) =>
        BuildInto(dir, temp => NgramModelBuilder.Build(corpus, order, role, temp, CorpusName));

    /// <summary>
    /// Builds a model directory at <paramref name="dir"/> unless a valid one is there: <paramref name="build"/> writes
    /// into a temporary directory beside it, which is renamed into place (a concurrent process never sees half a model).
    /// </summary>
    internal static void BuildInto(string dir, Action<string> build)
    {
        if (ModelDirectory.IsValid(dir)) return;
        var parent = Path.GetDirectoryName(dir)!;
        var temp = Path.Combine(parent, $".tmp-{Path.GetFileName(dir)}-{Guid.NewGuid():N}");
        try
        {
            build(temp);
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    Directory.Move(temp, dir);
                    return;
                }
                catch (IOException) when (attempt < 3)
                {
                    if (ModelDirectory.IsValid(dir)) return; // another process won the race
                    MoveAsideAndDelete(dir); // a broken entry: replace it
                }
                catch (UnauthorizedAccessException) when (attempt < 3 && Directory.Exists(dir))
                {
                    if (ModelDirectory.IsValid(dir)) return;
                    MoveAsideAndDelete(dir);
                }
            }
        }
        finally
        {
            TryDelete(temp);
        }
    }

    private static void MoveAsideAndDelete(string dir)
    {
        if (!Directory.Exists(dir)) return;
        var trash = Path.Combine(Path.GetDirectoryName(dir)!, $".trash-{Path.GetFileName(dir)}-{Guid.NewGuid():N}");
        try
        {
            Directory.Move(dir, trash);
        }
        catch (IOException)
        {
            return; // someone else moved it; the next attempt sees the new state
        }
        TryDelete(trash);
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static byte[] LoadCorpus()
    {
        using var stream = typeof(DefaultModels).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"Embedded corpus '{ResourceName}' is missing from the assembly.");
        using var gz = new GZipStream(stream, CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}

using System.Security.Cryptography;
using System.Text.Json;
using IotDsd.Core.Models;
using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Models;

/// <summary>
/// Reads and loads model directories: <c>manifest.json</c> plus the files it names, each checked against its
/// SHA-256. <see cref="Load"/> dispatches on the manifest's <c>kind</c>.
/// </summary>
public static class ModelDirectory
{
    private delegate ILanguageModel Loader(string dir, ModelManifest manifest, InferenceOptions options);

    private static readonly Dictionary<string, Loader> Loaders = new(StringComparer.Ordinal)
    {
        ["ngram"] = NgramOnnxModel.Load,
        [Transformer.TransformerModelBuilder.Kind] = Transformer.TransformerModel.Load,
    };

    private const string Fix = "Rebuild it (iotdsd models build, or delete the directory if it is in the default model cache " +
        "so it is rebuilt on next start).";

    /// <summary>Kinds that <see cref="Load"/> understands.</summary>
    public static IReadOnlyCollection<string> KnownKinds => Loaders.Keys;

    /// <summary>Reads and checks <c>manifest.json</c> (format, kind, files named); does not hash the files.</summary>
    public static ModelManifest ReadManifest(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        var full = Path.GetFullPath(dir);
        if (!Directory.Exists(full))
            throw new ModelLoadException(full, $"Model directory '{full}' does not exist. Pass the directory that holds " +
                $"{ModelManifest.FileName}, or leave the model option unset to use the shipped pair (--pair stories or ngram).");
        var manifestPath = Path.Combine(full, ModelManifest.FileName);
        if (!File.Exists(manifestPath) && OptimumDirectory.TryDescribe(full) is { } exported)
            return exported;
        if (!File.Exists(manifestPath))
            throw new ModelLoadException(manifestPath, $"Model directory '{full}' has no {ModelManifest.FileName}. " +
                $"A model directory needs {ModelManifest.FileName} (format {ModelManifest.FormatV1}) beside its ONNX files. {Fix}");

        ModelManifest manifest;
        try
        {
            manifest = ModelManifest.FromJson(File.ReadAllText(manifestPath));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' is not a valid model manifest: {e.Message} {Fix}", e);
        }

        if (manifest.Format != ModelManifest.FormatV1)
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' has format '{manifest.Format}'; this build reads " +
                $"'{ModelManifest.FormatV1}'. Use a model directory made for this version. {Fix}");
        // JSON null is legal for any field: a manifest that nulls what it must hold is refused, never dereferenced.
        if (manifest.Kind is null || manifest.Files is null || manifest.Sha256 is null
            || manifest.Files.Values.Any(f => string.IsNullOrEmpty(f) || f.Contains('\0', StringComparison.Ordinal)))
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' has a null kind, files or sha256, or an empty or " +
                $"NUL-containing file name. {Fix}");
        if (!Loaders.ContainsKey(manifest.Kind))
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' has unknown kind '{manifest.Kind}'; known kinds: " +
                $"{string.Join(", ", Loaders.Keys)}. Use a newer iotdsd build or a model directory of a known kind.");
        if (manifest.VocabSize <= 0)
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' has vocab_size {manifest.VocabSize}; it must be positive. {Fix}");
        if (!manifest.Files.ContainsKey(ModelManifest.ModelFileKey))
            throw new ModelLoadException(manifestPath, $"'{manifestPath}' names no \"{ModelManifest.ModelFileKey}\" entry in files. {Fix}");
        return manifest;
    }

    /// <summary>Reads the manifest and checks that every file it names exists and matches its SHA-256.</summary>
    public static ModelManifest Validate(string dir)
    {
        var manifest = ReadManifest(dir);
        var full = Path.GetFullPath(dir);
        foreach (var (role, file) in manifest.Files)
        {
            var path = ResolveFile(full, file);
            if (!File.Exists(path))
                throw new ModelLoadException(path, $"Model file '{path}' ({role}) named in '{Path.Combine(full, ModelManifest.FileName)}' " +
                    $"is missing. {Fix}");
            if (manifest.Unverified) continue;
            if (!manifest.Sha256.TryGetValue(role, out var expected) || string.IsNullOrWhiteSpace(expected))
                throw new ModelLoadException(path, $"'{Path.Combine(full, ModelManifest.FileName)}' has no sha256 for '{role}'. {Fix}");
            var actual = Sha256File(path);
            if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
                throw new ModelLoadException(path, $"Checksum mismatch for '{path}': manifest says sha256 {expected}, file has {actual}. " +
                    $"The file is corrupt or was replaced. {Fix}");
        }
        return manifest;
    }

    /// <summary>True when <paramref name="dir"/> is a complete, checksum-valid model directory.</summary>
    public static bool IsValid(string dir)
    {
        try { Validate(dir); return true; }
        catch (ModelLoadException) { return false; }
    }

    /// <summary>Validates the directory and loads its model.</summary>
    /// <exception cref="Execution.ExecutionProviderException">A GPU provider refused the graph (an operator it lacks, named).</exception>
    public static ILanguageModel Load(string dir, InferenceOptions? options = null)
    {
        var manifest = Validate(dir);
        options ??= InferenceOptions.Default;
        try
        {
            return Loaders[manifest.Kind](Path.GetFullPath(dir), manifest, options);
        }
        catch (Exception e) when (e is ModelLoadException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            Execution.ProviderFailures.ThrowIfRefused(e, Path.GetFullPath(dir), FilePath(dir, manifest), options);
            throw;
        }
    }

    /// <summary>Full path of the manifest's file for <paramref name="role"/>.</summary>
    public static string FilePath(string dir, ModelManifest manifest, string role = ModelManifest.ModelFileKey) =>
        ResolveFile(Path.GetFullPath(dir), manifest.Files[role]);

    internal static string Sha256File(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static string ResolveFile(string dir, string file)
    {
        var path = Path.GetFullPath(Path.Combine(dir, file));
        var root = dir.EndsWith(Path.DirectorySeparatorChar) ? dir : dir + Path.DirectorySeparatorChar;
        if (!path.StartsWith(root, StringComparison.Ordinal))
            throw new ModelLoadException(path, $"'{Path.Combine(dir, ModelManifest.FileName)}' names file '{file}' outside the model directory. {Fix}");
        return path;
    }
}

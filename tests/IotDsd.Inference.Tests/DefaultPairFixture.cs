using System.Diagnostics;
using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Tests;

/// <summary>Builds the default pair once into a private temp cache for the whole test run.</summary>
public sealed class DefaultPairFixture : IDisposable
{
    public DefaultPairFixture()
    {
        CacheRoot = Path.Combine(Path.GetTempPath(), "iotdsd-inference-tests-" + Guid.NewGuid().ToString("N"));
        var sw = Stopwatch.StartNew();
        (DraftDir, TargetDir) = DefaultModels.Ensure(CacheRoot);
        BuildTime = sw.Elapsed;
    }

    public string CacheRoot { get; }
    public string DraftDir { get; }
    public string TargetDir { get; }
    public TimeSpan BuildTime { get; }

    public void Dispose()
    {
        try { Directory.Delete(CacheRoot, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class DefaultPairCollection : ICollectionFixture<DefaultPairFixture>
{
    public const string Name = "default pair";
}

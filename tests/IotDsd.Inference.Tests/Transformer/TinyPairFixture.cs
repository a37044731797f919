using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>Builds the tiny transformer draft/target pair once into a temp directory.</summary>
public sealed class TinyPairFixture : IDisposable
{
    public const ulong Seed = 7;

    public TinyPairFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "iotdsd-transformer-tests-" + Guid.NewGuid().ToString("N"));
        DraftDir = Path.Combine(Root, "draft");
        TargetDir = Path.Combine(Root, "target");
        var corpus = DefaultModels.Corpus.Span;
        TransformerModelBuilder.Build("tiny", "draft", Seed, DraftDir, corpus, DefaultModels.CorpusName);
        TransformerModelBuilder.Build("tiny", "target", Seed, TargetDir, corpus, DefaultModels.CorpusName);
    }

    public string Root { get; }
    public string DraftDir { get; }
    public string TargetDir { get; }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class TinyPairCollection : ICollectionFixture<TinyPairFixture>
{
    public const string Name = "tiny transformer pair";
}

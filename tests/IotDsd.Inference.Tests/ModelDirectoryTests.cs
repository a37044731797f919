using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Tests;

public sealed class ModelDirectoryTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iotdsd-modeldir-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Load_MissingDirectory_ThrowsNamingPath()
    {
        var dir = Path.Combine(_root, "nope");
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains(dir, e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void Load_MissingManifest_ThrowsNamingManifest()
    {
        Directory.CreateDirectory(_root);
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(_root));
        Assert.Contains("manifest.json", e.Message);
        Assert.Contains(_root, e.Message);
    }

    [Fact]
    public void Load_CorruptedOnnx_ThrowsChecksumMismatch()
    {
        var dir = Build();
        var onnx = Path.Combine(dir, "model.onnx");
        var bytes = File.ReadAllBytes(onnx);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(onnx, bytes);
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("Checksum mismatch", e.Message);
        Assert.Contains(onnx, e.Message);
        Assert.Equal(onnx, e.Path);
        Assert.False(ModelDirectory.IsValid(dir));
    }

    [Fact]
    public void Load_MissingOnnx_ThrowsNamingFile()
    {
        var dir = Build();
        File.Delete(Path.Combine(dir, "model.onnx"));
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("is missing", e.Message);
        Assert.Contains("model.onnx", e.Message);
    }

    [Fact]
    public void Load_BadManifestJson_ThrowsInvalidManifest()
    {
        var dir = Build();
        File.WriteAllText(Path.Combine(dir, "manifest.json"), "{ \"format\": ");
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("not a valid model manifest", e.Message);
        Assert.Contains("manifest.json", e.Message);
    }

    [Fact]
    public void Load_UnknownKind_ThrowsListingKnownKinds()
    {
        var dir = Build();
        var path = Path.Combine(dir, "manifest.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"kind\": \"ngram\"", "\"kind\": \"mamba\""));
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("unknown kind 'mamba'", e.Message);
        Assert.Contains("ngram", e.Message);
    }

    [Fact]
    public void Load_UnknownFormat_Throws()
    {
        var dir = Build();
        var path = Path.Combine(dir, "manifest.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("iotdsd-model/1", "iotdsd-model/9"));
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("iotdsd-model/9", e.Message);
    }

    [Fact]
    public void Load_UnloadableOnnxWithMatchingChecksum_ThrowsOrtFailure()
    {
        var dir = Build();
        var onnx = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(onnx, [1, 2, 3, 4, 5]);
        var path = Path.Combine(dir, "manifest.json");
        var manifest = ModelManifest.FromJson(File.ReadAllText(path));
        manifest.Sha256["model"] = ModelDirectory.Sha256File(onnx);
        File.WriteAllText(path, manifest.ToJson());
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        Assert.Contains("ONNX Runtime could not load", e.Message);
        Assert.Contains(onnx, e.Message);
    }

    [Fact]
    public void ReadManifest_Built_HasSnakeCaseFields()
    {
        var dir = Build();
        var json = File.ReadAllText(Path.Combine(dir, "manifest.json"));
        foreach (var field in new[] { "\"format\"", "\"vocab_size\": 256", "\"tokenizer\": \"bytes\"", "\"order\": 3",
                     "\"heldout_bits_per_byte\"", "\"discounts\"", "\"corpus\"", "\"sha256\"" })
            Assert.Contains(field, json);
        var m = ModelDirectory.ReadManifest(dir);
        Assert.Equal("ngram", m.Kind);
        Assert.Equal("ngram-3-test", m.Name);
        Assert.Equal("model.onnx", m.Files["model"]);
        Assert.IsType<Tokenizers.ByteTokenizer>(Tokenizers.TokenizerFactory.ForModelDirectory(dir));
    }

    private string Build()
    {
        var dir = Path.Combine(_root, "m");
        NgramModelBuilder.Build(TestCorpus.Small(20_000), 3, "test", dir);
        return dir;
    }
}

using System.Text.Json;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// <c>iotdsd models import --format llama2c</c> and the shipped stories pair, as child processes: the imported model
/// continues from BOS as llama2.c does, bad files get one line naming them and exit 2, and the default pair's
/// speculative greedy text equals <c>generate</c>'s.
/// </summary>
public sealed class StoriesCliTests : IDisposable
{
    private const string FirstSentence = "Once upon a time, there was a little girl named Lily.";
    private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-stories-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static string Shipped(string file) =>
        Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "IotDsd.Inference", "Llama", "Stories", file);

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_root, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public async Task Import_ThenGenerateFromBos_ContinuesAsLlama2c()
    {
        var dir = Path.Combine(_root, "stories");
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "import", "--format", "llama2c", "--checkpoint", Shipped("stories260K.bin"), "--tokenizer", Shipped("tok512.bin"), "--out", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("5 layers, 64 wide, 8 heads, vocabulary 512", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = await CliProcess.RunAsync(null, "generate", "--target", dir, "--prompt", "", "--temperature", "0", "--max-tokens", "40", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var text = doc.RootElement.GetProperty("text").GetString()!;
        Assert.StartsWith(FirstSentence, text, StringComparison.Ordinal); // from BOS: no leading space (SentencePiece's Strip)
        Assert.DoesNotContain("<s>", text, StringComparison.Ordinal);
        Assert.Equal("max_tokens", doc.RootElement.GetProperty("stop_reason").GetString());
    }

    [Fact]
    public async Task Import_BadFiles_OneLineNamingTheFile_Exit2()
    {
        var checkpoint = File.ReadAllBytes(Shipped("stories260K.bin"));
        var tokenizer = File.ReadAllBytes(Shipped("tok512.bin"));
        var truncated = Write("truncated.bin", checkpoint[..(checkpoint.Length / 2)]);
        var header = checkpoint.ToArray();
        BitConverter.TryWriteBytes(header.AsSpan(16, 4), 3); // 3 key/value heads do not divide 8 query heads
        var badHeader = Write("header.bin", header);
        var otherTokenizer = Write("other-tok.bin", tokenizer[..1000]); // a valid file with fewer tokens than the model
        var good = Shipped("stories260K.bin");
        var goodTokenizer = Shipped("tok512.bin");
        foreach (var (ckpt, tok, named) in new[] { (truncated, goodTokenizer, truncated), (badHeader, goodTokenizer, badHeader), (good, otherTokenizer, otherTokenizer) })
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "import", "--format", "llama2c", "--checkpoint", ckpt, "--tokenizer", tok, "--out", Path.Combine(_root, "out"));
            Assert.Equal(2, code);
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.Contains(named, lines[0], StringComparison.Ordinal);
            Assert.Equal("", stdout);
        }
    }

    [Fact]
    public async Task DefaultPair_SpeculativeGreedy_EqualsGenerate()
    {
        // The shipped pair is imported and its draft distilled on first use, in this test's own cache.
        var environment = new Dictionary<string, string> { ["IOTDSD_MODEL_CACHE"] = Path.Combine(_root, "cache"), ["IOTDSD_PAIR"] = "stories" };
        var (code, stdout, stderr) = await CliProcess.RunAsync(environment, "generate", "--prompt", "", "--temperature", "0", "--max-tokens", "120", "--json");
        Assert.True(code == 0, stderr);
        using var reference = JsonDocument.Parse(stdout);
        Assert.StartsWith(FirstSentence, reference.RootElement.GetProperty("text").GetString()!, StringComparison.Ordinal);
        foreach (var mode in new[] { "greedy", "rsr" })
        {
            (code, stdout, stderr) = await CliProcess.RunAsync(environment, "demo", "--prompt", "", "--temperature", "0", "--mode", mode, "--max-tokens", "120", "--json");
            Assert.True(code == 0, stderr);
            using var demo = JsonDocument.Parse(stdout);
            Assert.Equal(reference.RootElement.GetProperty("text").GetString(), demo.RootElement.GetProperty("text").GetString());
            Assert.Equal(reference.RootElement.GetProperty("stop_reason").GetString(), demo.RootElement.GetProperty("stop_reason").GetString());
            Assert.InRange(demo.RootElement.GetProperty("acceptance_rate").GetDouble(), 0.2, 1.0);
        }
    }
}

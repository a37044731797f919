using System.Text.Json;
using IotDsd.Inference.Tokenizers;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary><c>iotdsd models tokenize</c> as a user runs it: a real child process on real tokenizer files.</summary>
public sealed class ModelsTokenizeCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("iotdsd-tokenize-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Tokenize_Json_IdsAndTokens()
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        HfBpeTokenizer.WriteByteVocabulary(path);
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "tokenize", "--tokenizer", path, "--text", "hi é", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal([104, 105, 32, 195, 169], doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["h", "i", "Ġ", "Ã", "©"], doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));

        // A directory holding tokenizer.json works the same; plain output is one line per token.
        (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "tokenize", "--tokenizer", _dir, "--text", "hi");
        Assert.True(code == 0, stderr);
        Assert.Equal(["2 tokens", "104\t\"h\"", "105\t\"i\""], stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Tokenize_UnknownComponent_OneLineErrorExit2()
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"UnicodeScripts"}}""");
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "models", "tokenize", "--tokenizer", path, "--text", "a");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(path, line, StringComparison.Ordinal);
        Assert.Contains("unknown pre_tokenizer type 'UnicodeScripts'", line, StringComparison.Ordinal);

        (code, _, stderr) = await CliProcess.RunAsync(null, "models", "tokenize", "--tokenizer", Path.Combine(_dir, "absent.json"), "--text", "a");
        Assert.Equal(2, code);
        Assert.Contains("no such file", stderr, StringComparison.Ordinal);
    }
}

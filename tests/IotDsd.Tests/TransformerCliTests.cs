using System.Text.Json;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary><c>iotdsd models build --kind transformer</c>, then the built pair through the generating commands, as child processes.</summary>
public sealed class TransformerCliTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iotdsd-tf-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private Task<(int Code, string Out, string Err)> RunAsync(params string[] args) => RunWithAsync(null, args);

    private Task<(int Code, string Out, string Err)> RunWithAsync(string? provider, params string[] args)
    {
        var environment = new Dictionary<string, string> { ["IOTDSD_MODEL_CACHE"] = Path.Combine(_root, "cache") };
        if (provider is not null)
        {
            environment["IOTDSD_EXECUTION_PROVIDER"] = provider;
            environment["IOTDSD_PROVIDER_LIBRARY"] = "";
        }

        return CliProcess.RunAsync(environment, args);
    }

    [Theory]
    [InlineData("2", 0)]
    [InlineData("zero", 2)]
    [InlineData("0", 2)]
    public async Task IntraOpThreads_FromEnvironment_UsedOrClearError(string threads, int expected)
    {
        var target = Path.Combine(_root, "threads-target");
        var built = await RunAsync("models", "build", "--kind", "transformer", "--role", "target", "--preset", "tiny", "--seed", "3", "--out", target);
        Assert.True(built.Code == 0, built.Err);
        var environment = new Dictionary<string, string> { ["IOTDSD_MODEL_CACHE"] = Path.Combine(_root, "cache"), ["IOTDSD_INTRA_OP_THREADS"] = threads };
        var one = await RunAsync("generate", "--prompt", "Hello", "--max-tokens", "20", "--temperature", "0", "--json", "--target", target);
        var run = await CliProcess.RunAsync(environment, "generate", "--prompt", "Hello", "--max-tokens", "20", "--temperature", "0", "--json", "--target", target);
        Assert.True(run.Code == expected, run.Err);
        if (expected == 0)
        {
            using var a = JsonDocument.Parse(one.Out);
            using var b = JsonDocument.Parse(run.Out);
            Assert.Equal(a.RootElement.GetProperty("text").GetString(), b.RootElement.GetProperty("text").GetString()); // more threads, same text
        }
        else
        {
            Assert.Contains("IOTDSD_INTRA_OP_THREADS", run.Err, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ModelsBuild_TransformerPair_DemoGreedyMatchesGenerateAndBenchRuns()
    {
        var draft = Path.Combine(_root, "draft");
        var target = Path.Combine(_root, "target");
        var built = await RunAsync("models", "build", "--kind", "transformer", "--role", "draft", "--preset", "tiny", "--seed", "3", "--out", draft);
        Assert.True(built.Code == 0, built.Err);
        Assert.Contains("1 layers", built.Out, StringComparison.Ordinal);
        built = await RunAsync("models", "build", "--kind", "transformer", "--role", "target", "--preset", "tiny", "--seed", "3", "--out", target);
        Assert.True(built.Code == 0, built.Err);
        foreach (var file in new[] { "model.onnx", "tokenizer.json", "manifest.json" })
        {
            Assert.True(File.Exists(Path.Combine(target, file)), file);
        }

        var demo = await RunAsync("demo", "--prompt", "Café: naïve", "--max-tokens", "80", "--temperature", "0", "--json", "--draft", draft, "--target", target);
        var generate = await RunAsync("generate", "--prompt", "Café: naïve", "--max-tokens", "80", "--temperature", "0", "--json", "--target", target);
        Assert.True(demo.Code == 0, demo.Err);
        Assert.True(generate.Code == 0, generate.Err);
        using var d = JsonDocument.Parse(demo.Out);
        using var g = JsonDocument.Parse(generate.Out);
        Assert.Equal(g.RootElement.GetProperty("text").GetString(), d.RootElement.GetProperty("text").GetString());

        var bench = await RunAsync("bench", "models", "--draft", draft, "--target", target, "--iterations", "2", "--batches", "1,3");
        Assert.True(bench.Code == 0, bench.Err);
        Assert.Contains("| 8 |", bench.Out, StringComparison.Ordinal);   // γ up to 8
        Assert.Contains("| 3 |", bench.Out, StringComparison.Ordinal);   // batch of 3
        Assert.Contains("managed bytes/step", bench.Out, StringComparison.Ordinal);
        Assert.Contains("pass ≈ ", bench.Out, StringComparison.Ordinal);    // the pass cost split and what it implies
        Assert.Contains("at a large batch", bench.Out, StringComparison.Ordinal); // the break-even line, or why the fit gave none (timing noise on a busy machine)
    }

    [Fact]
    public async Task BenchModels_Contexts_OneJsonObjectPerBatchAndContext()
    {
        var target = Path.Combine(_root, "ctx-target");
        var built = await RunAsync("models", "build", "--kind", "transformer", "--role", "target", "--preset", "tiny", "--seed", "3", "--out", target);
        Assert.True(built.Code == 0, built.Err);

        var bench = await RunAsync("bench", "models", "--target", target, "--batches", "1,3", "--contexts", "8,40", "--gamma", "4", "--iterations", "2", "--json");
        Assert.True(bench.Code == 0, bench.Err);
        var lines = bench.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var seen = new List<(int Batch, int Context)>();
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            seen.Add((o.GetProperty("batch").GetInt32(), o.GetProperty("context").GetInt32()));
            Assert.Equal(4, o.GetProperty("gamma").GetInt32());
            var ms = o.GetProperty("verify_ms").GetDouble();
            Assert.True(ms > 0 && ms < 60_000, line);
            Assert.Equal("cpu", o.GetProperty("provider").GetString());
            Assert.Equal("host", o.GetProperty("kv").GetString());
            // One slot of the tiny shape's pool (4,096 B a position): 64 positions hold 8 or 40 cached tokens + 5.
            Assert.Equal(64 * 4096, o.GetProperty("kv_slot_bytes").GetInt64());
        }

        Assert.Equal([(1, 8), (1, 40), (3, 8), (3, 40)], seen);

        // A context past the model's positions (1020 + γ + 1 > 1024, after a context that fits), a zero context and
        // --json without --contexts: one clear line, exit 2, nothing printed.
        foreach (var args in new[] { new[] { "--contexts", "1100" }, ["--contexts", "8,1020", "--json"], ["--contexts", "0"], ["--json"] })
        {
            var bad = await RunAsync(["bench", "models", "--target", target, "--batches", "1", "--iterations", "1", .. args]);
            Assert.True(bad.Code == 2, bad.Err);
            Assert.Equal("", bad.Out);
            Assert.StartsWith("iotdsd bench models: ", bad.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1], StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", bad.Err, StringComparison.Ordinal); // no stack trace
        }
    }

    [Fact]
    public async Task Generate_CudaWithoutLibrary_FailsWithInstallHint()
    {
        var psiArgs = new[] { "models", "build", "--kind", "transformer", "--role", "target", "--out", Path.Combine(_root, "t") };
        Assert.Equal(0, (await RunAsync(psiArgs)).Code);
        var (code, stdout, stderr) = await RunWithAsync("cuda", "generate", "--prompt", "x", "--target", Path.Combine(_root, "t"));
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Contains("libonnxruntime_providers_cuda.so", stderr, StringComparison.Ordinal);
    }
}

/// <summary>Exported models whose logits rows are padded differently pair up; another tokenizer of the same size does not.</summary>
public sealed class PaddedVocabularyCliTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iotdsd-padded-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Demo_DraftAndTargetPaddedDifferently_GreedyEqualsTarget_OtherTokenizerRefused()
    {
        var spec = new IotDsd.Inference.Tests.Transformer.ExportSpec();
        var draft = IotDsd.Inference.Tests.Transformer.ExportFixture.OptimumDirectory(spec with { LogitsWidth = 320, Layers = 1 }, Path.Combine(_root, "draft"));
        var target = IotDsd.Inference.Tests.Transformer.ExportFixture.OptimumDirectory(spec with { LogitsWidth = 384 }, Path.Combine(_root, "target"));
        var environment = new Dictionary<string, string> { ["IOTDSD_MODEL_CACHE"] = Path.Combine(_root, "cache") };

        var demo = await CliProcess.RunAsync(environment, "demo", "--prompt", "Once upon a time", "--max-tokens", "40", "--temperature", "0", "--json", "--draft", draft, "--target", target);
        var generate = await CliProcess.RunAsync(environment, "generate", "--prompt", "Once upon a time", "--max-tokens", "40", "--temperature", "0", "--json", "--target", target);
        Assert.True(demo.Code == 0, demo.Err);
        Assert.True(generate.Code == 0, generate.Err);
        using (var d = JsonDocument.Parse(demo.Out))
        using (var g = JsonDocument.Parse(generate.Out))
        {
            Assert.Equal(g.RootElement.GetProperty("text").GetString(), d.RootElement.GetProperty("text").GetString());
        }

        // The same size, another tokenizer (two byte tokens swapped): refused before anything runs, naming both.
        var other = IotDsd.Inference.Tests.Transformer.ExportFixture.OptimumDirectory(spec with { LogitsWidth = 320, Layers = 1 }, Path.Combine(_root, "other"));
        var tokenizer = Path.Combine(other, "tokenizer.json");
        var json = File.ReadAllText(tokenizer);
        File.WriteAllText(tokenizer, json.Replace("\"a\": 97", "\"a\": TMP", StringComparison.Ordinal).Replace("\"b\": 98", "\"b\": 97", StringComparison.Ordinal).Replace("\"a\": TMP", "\"a\": 98", StringComparison.Ordinal));
        var refused = await CliProcess.RunAsync(environment, "demo", "--prompt", "Once upon a time", "--max-tokens", "10", "--temperature", "0", "--draft", other, "--target", target);
        Assert.Equal(2, refused.Code);
        var line = Assert.Single(refused.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("different tokenizers", line);
        Assert.Contains(other, line);
        Assert.Contains(target, line);
    }
}

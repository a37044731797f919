using System.Text.Json;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>The <c>iotdsd</c> executable as a user runs it: a real child process.</summary>
public sealed class CliTests
{
    private static Task<(int Code, string Out, string Err)> RunAsync(params string[] args) => CliProcess.RunAsync(null, args);

    [Theory]
    [InlineData("demo", "--prompt", "x", "--mode", "fast")]
    [InlineData("demo", "--prompt", "x", "--temperature", "-1")]
    [InlineData("demo", "--prompt", "x", "--mode", "greedy", "--temperature", "0.5")]
    [InlineData("demo", "--prompt", "x", "--gamma", "0")]
    [InlineData("demo", "--prompt", "x", "--top-p", "1.5")]
    [InlineData("demo", "--prompt", "x", "--max-tokens", "abc")]
    [InlineData("demo", "--nonsense")]
    [InlineData("demo")]
    [InlineData("edge", "--prompt", "x", "--broker", "localhost:99999")]
    [InlineData("edge", "--prompt", "x", "--broker", "localhost:1883", "--state-sync-rounds", "0")]
    [InlineData("edge", "--prompt", "x", "--broker", "localhost:1883", "--state-sync-ms", "-1")]
    [InlineData("verifier", "--broker", "")]
    [InlineData("generate", "--prompt", "x", "--target", "/nonexistent/model")]
    [InlineData("frobnicate")]
    [InlineData("models", "build", "--kind", "lstm", "--role", "draft", "--out", "x")]
    [InlineData("models", "build", "--kind", "transformer", "--role", "draft", "--preset", "huge", "--out", "x")]
    [InlineData("bench", "models", "--draft", "/nonexistent/a")]
    [InlineData("bench", "models", "--batches", "0,2")]
    [InlineData("bench", "faults", "--prompt", "x", "--cuts", "-1")]
    [InlineData("bench", "faults", "--prompt", "x", "--cut-ms", "5-1")]
    [InlineData("bench", "faults", "--prompt", "x", "--cut-ms", "0-700000")]
    [InlineData("bench", "faults", "--prompt", "x", "--request-timeout-ms", "10")]
    [InlineData("bench", "faults", "--prompt", "x", "--mode", "greedy", "--temperature", "0.8")]
    public async Task Cli_BadArguments_OneLineErrorNonZeroExit(params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(args);
        Assert.NotEqual(0, code);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("iotdsd", lines[0], StringComparison.Ordinal);
        Assert.Equal("", stdout);
    }

    [Theory]
    [InlineData("demo")]
    [InlineData("generate")]
    [InlineData("verifier")]
    [InlineData("edge")]
    [InlineData("broker")]
    public async Task Cli_Help_DescribesCommand(string command)
    {
        var (code, stdout, _) = await RunAsync(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains("Usage:", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_Json_OneObjectPerSampleWithRequiredFields()
    {
        var (code, stdout, stderr) = await RunAsync("demo", "--prompt", "The meaning of life is", "--max-tokens", "60", "--samples", "2", "--json", "--mode", "rsr");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            foreach (var field in new[] { "text", "tokens", "rounds", "acceptance_rate", "mean_accepted", "tokens_per_s", "uplink_bytes", "downlink_bytes", "mode", "gamma", "seed" })
            {
                Assert.True(doc.RootElement.TryGetProperty(field, out _), $"missing {field}");
            }

            Assert.Equal(60, doc.RootElement.GetProperty("tokens").GetInt32());
            Assert.Equal("rsr", doc.RootElement.GetProperty("mode").GetString());
        }

        Assert.NotEqual(lines[0], lines[1]);
    }

    [Fact]
    public async Task Demo_ModeGreedyAlone_MeansTemperatureZero()
    {
        var greedy = await RunAsync("demo", "--prompt", "A computer", "--max-tokens", "60", "--mode", "greedy", "--json");
        Assert.True(greedy.Code == 0, greedy.Err);
        var explicitZero = await RunAsync("demo", "--prompt", "A computer", "--max-tokens", "60", "--mode", "greedy", "--temperature", "0", "--json");
        Assert.True(explicitZero.Code == 0, explicitZero.Err);
        var generate = await RunAsync("generate", "--prompt", "A computer", "--max-tokens", "60", "--temperature", "0", "--json");
        Assert.Equal(0, generate.Code);
        using var d = JsonDocument.Parse(greedy.Out);
        using var z = JsonDocument.Parse(explicitZero.Out);
        using var g = JsonDocument.Parse(generate.Out);
        Assert.Equal("greedy", d.RootElement.GetProperty("mode").GetString());
        Assert.Equal(g.RootElement.GetProperty("text").GetString(), d.RootElement.GetProperty("text").GetString());
        Assert.Equal(g.RootElement.GetProperty("text").GetString(), z.RootElement.GetProperty("text").GetString());
    }

    [Theory]
    [InlineData("demo", "0.5")]
    [InlineData("loadgen", "0.9")]
    public async Task ModeGreedy_ExplicitNonZeroTemperature_ErrorNamesBoth(string command, string temperature)
    {
        var (code, stdout, stderr) = await RunAsync(command, "--prompt", "x", "--mode", "greedy", "--temperature", temperature);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("--mode greedy", line, StringComparison.Ordinal);
        Assert.Contains($"--temperature {temperature}", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DemoGreedy_MatchesGenerate()
    {
        var demo = await RunAsync("demo", "--prompt", "A computer", "--max-tokens", "200", "--temperature", "0", "--json");
        var generate = await RunAsync("generate", "--prompt", "A computer", "--max-tokens", "200", "--temperature", "0", "--json");
        Assert.Equal(0, demo.Code);
        Assert.Equal(0, generate.Code);
        using var d = JsonDocument.Parse(demo.Out);
        using var g = JsonDocument.Parse(generate.Out);
        Assert.Equal(g.RootElement.GetProperty("text").GetString(), d.RootElement.GetProperty("text").GetString());
    }
}

using System.Text.Json;
using IotDsd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// <c>iotdsd bench wan</c> as a user runs it (a real child process, the n-gram pair): one tiny cell of each table, end to
/// end through the link emulator, and bad arguments refused in one line.
/// </summary>
public sealed class WanBenchTests(ITestOutputHelper output)
{
    [Fact]
    public async Task BenchWan_OneCellOfEachTable_RunsThroughTheLinkAndReports()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null,
            "bench", "wan", "--tables", "a,b", "--delays", "5", "--vocabs", "256", "--modes", "greedy,rsr", "--links", "cellular",
            "--tokens", "12", "--cell-tokens", "12", "--realistic", "none", "--json");
        output.WriteLine(stderr);
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;

        var a = root.GetProperty("table_a").EnumerateArray().ToList();
        Assert.Equal(["sequential", "default"], a.Select(r => r.GetProperty("shape").GetString()));
        foreach (var row in a)
        {
            Assert.Equal("ok", row.GetProperty("status").GetString());
            Assert.Equal(5, row.GetProperty("one_way_ms").GetInt32());
            Assert.Equal(12, row.GetProperty("tokens").GetInt32());
            Assert.True(row.GetProperty("text_matches_generate").GetBoolean(), row.ToString());

            // Speculation happened: more than one token per round on average.
            Assert.True(row.GetProperty("tokens_per_round").GetDouble() > 1, row.ToString());
        }

        var b = root.GetProperty("table_b").EnumerateArray().ToList();
        Assert.Equal(["greedy", "rsr"], b.Select(r => r.GetProperty("mode").GetString()));
        foreach (var row in b)
        {
            Assert.Equal("ok", row.GetProperty("status").GetString());
            Assert.Equal("cellular", row.GetProperty("link").GetString());
            Assert.Equal(256, row.GetProperty("vocab").GetInt32());
            Assert.Equal(12, row.GetProperty("tokens").GetInt32());

            // Every round crossed the emulated link: 30 ms each way is the floor of a round trip.
            Assert.True(row.GetProperty("round_p50_ms").GetDouble() >= 60, row.ToString());
            Assert.True(row.GetProperty("up_bytes_per_token").GetDouble() > 0, row.ToString());
            Assert.True(row.GetProperty("down_bytes_per_token").GetDouble() > 0, row.ToString());
            Assert.True(row.GetProperty("link_bytes_up").GetInt64() > 0, row.ToString());
            Assert.True(row.GetProperty("sim_tokens_per_s").GetDouble() > 0, row.ToString());
            Assert.True(row.GetProperty("sim_round_ms").GetDouble() >= 60, row.ToString());
        }
    }

    [Theory]
    [InlineData("--delays", "10,-5")]
    [InlineData("--vocabs", "100")]
    [InlineData("--modes", "cloud")]
    [InlineData("--links", "satellite")]
    [InlineData("--tables", "c")]
    [InlineData("--cell-limit-s", "0")]
    [InlineData("--realistic", "huge")]
    [InlineData("--broker", "localhost:99999")]
    public async Task BenchWan_BadArgument_OneLineErrorExitTwo(string option, string value)
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, "bench", "wan", option, value);
        Assert.Equal(2, code);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.True(lines[0].Contains(option, StringComparison.Ordinal) || lines[0].Contains(value, StringComparison.Ordinal), lines[0]);
        Assert.Equal("", stdout);
    }
}

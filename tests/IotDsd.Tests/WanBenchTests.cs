using System.Text.Json;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using IotDsd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
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

    [SkippableFact]
    public async Task BenchWan_OnMosquitto_RunsACellAndLeavesNothingRetained()
    {
        await using var broker = await MosquittoProcess.TryStart();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        await using (var control = new MqttConnection(new MqttSettings { Broker = address, ClientId = "control" }, _ => false, NullLogger.Instance))
        {
            await control.ConnectAsync([], CancellationToken.None);
            await control.PublishRawAsync(TopicScheme.DeviceStatus("control-device"), new PresencePayload { Role = "device", Id = "control-device", Connection = 1 }.ToJson(), retain: true, CancellationToken.None);
        }

        var (code, stdout, stderr) = await CliProcess.RunAsync(null,
            "bench", "wan", "--broker", $"{address}", "--tables", "b", "--vocabs", "256", "--modes", "dssd", "--links", "narrowband", "--cell-tokens", "8", "--json");
        output.WriteLine(stderr);
        Assert.True(code == 0, stderr);
        var row = Assert.Single(JsonDocument.Parse(stdout).RootElement.GetProperty("table_b").EnumerateArray().ToList());
        Assert.Equal("ok", row.GetProperty("status").GetString());
        Assert.Equal(8, row.GetProperty("tokens").GetInt32());
        Assert.True(row.GetProperty("round_p50_ms").GetDouble() >= 200, row.ToString());

        var diag = await CliProcess.RunAsync(null, "diag", "--broker", $"{address}", "--json", "--wait-ms", "1000");
        Assert.True(diag.Code == 0, diag.Err);
        var ids = JsonDocument.Parse(diag.Out).RootElement.EnumerateArray().Select(r => r.GetProperty("id").GetString()).ToList();
        Assert.Equal(["control-device"], ids);
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

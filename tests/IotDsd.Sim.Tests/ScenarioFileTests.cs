using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Tests;

/// <summary>
/// The shipped example scenario (src/IotDsd.Sim/Scenarios/example.json) and the errors a scenario file can give: the
/// example documents every field with its true default and runs through <c>iotdsd sim</c>; a mistake is one line naming
/// the file and the field, with exit 2 and no .NET type name.
/// </summary>
public sealed partial class ScenarioFileTests
{
    private static readonly string Example = Path.Combine(FindRepo(), "src/IotDsd.Sim/Scenarios/example.json");

    [Fact]
    public void Example_DocumentsEveryFieldWithItsDefault()
    {
        var text = File.ReadAllText(Example);
        var documented = DefaultInBrackets().Matches(text).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["default"].Value.Trim());
        var defaults = Flatten(JsonDocument.Parse(ScenarioFile.ToJson(new Scenario())).RootElement);
        foreach (var path in ScenarioFile.FieldPaths())
        {
            var leaf = path[(path.LastIndexOf('.') + 1)..];
            Assert.True(documented.ContainsKey(leaf), $"the example does not document {path}");
            Assert.True(defaults[leaf] == documented[leaf], $"{path}: the example says the default is [{documented[leaf]}], the simulator uses {defaults[leaf]}");
        }

        Assert.Equal(ScenarioFile.FieldPaths().Count, documented.Count);
    }

    [Fact]
    public void Example_LoadsAsWritten()
    {
        var s = ScenarioFile.Load(Example);
        Assert.Equal(SimMode.Rsr, s.Mode);
        Assert.Equal(20, s.Devices);
        Assert.Equal(60, s.Link.RttMs);
        Assert.Equal([0.85, 0.8, 0.78, 0.75, 0.72, 0.7], s.Acceptance.ByPosition);
    }

    [Fact]
    public async Task Sim_ExampleScenario_RunsTheFleetItDescribes()
    {
        var (code, stdout, stderr) = await RunAsync("sim", "--scenario", Example, "--json");
        Assert.True(code == 0, stderr);
        var result = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal("rsr", result.GetProperty("mode").GetString());
        Assert.Equal(20, result.GetProperty("devices").GetInt32());
        Assert.Equal(20 * 4 * 256, result.GetProperty("tokens").GetInt64());
        Assert.Equal(80, result.GetProperty("requests").GetInt32());
    }

    [Theory]
    [InlineData("""{ "link": { "rtt_msec": 3 } }""", "unknown field link.rtt_msec; did you mean link.rtt_ms?")]
    [InlineData("""{ "frobnicate": 1 }""", "unknown field frobnicate; a scenario takes mode, gamma,")]
    [InlineData("""{ "verifier": { "count": 2, "gpus": 1 } }""", "unknown field verifier.gpus; verifier takes count, max_batch,")]
    [InlineData("""{ "link": { "rtt_ms": "3" } }""", "link.rtt_ms must be a number, got \"3\"")]
    [InlineData("""{ "gamma": 4.5 }""", "gamma must be a whole number, got 4.5")]
    [InlineData("""{ "acceptance": { "by_position": 0.5 } }""", "acceptance.by_position must be a list of numbers")]
    [InlineData("""{ "mode": "fast" }""", "mode must be one of cloud, cloud-sd, dsd, dssd, rsr, greedy, got \"fast\"")]
    [InlineData("""{ "gamma": 4 """, "is not valid JSON at line 1")]
    public async Task Sim_BadScenarioFile_OneLineNamingFileAndField(string json, string expected)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iotdsd-scenario-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            var (code, stdout, stderr) = await RunAsync("sim", "--scenario", path);
            Assert.Equal(2, code);
            Assert.Equal("", stdout);
            var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith($"iotdsd sim: scenario file {path}", line, StringComparison.Ordinal);
            Assert.Contains(expected, line, StringComparison.Ordinal);
            Assert.DoesNotContain("System.", line, StringComparison.Ordinal);
            Assert.DoesNotContain("IotDsd.", line, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Leaf name → default as the example writes it: numbers and words bare, lists without brackets.</summary>
    private static Dictionary<string, string> Flatten(JsonElement e)
    {
        var result = new Dictionary<string, string>();
        foreach (var p in e.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.Object)
            {
                foreach (var (k, v) in Flatten(p.Value))
                {
                    result[k] = v;
                }
            }
            else
            {
                result[p.Name] = p.Value.ValueKind switch
                {
                    JsonValueKind.Array => string.Join(", ", p.Value.EnumerateArray().Select(x => x.GetRawText())),
                    JsonValueKind.String => p.Value.GetString()!,
                    _ => p.Value.GetRawText(),
                };
            }
        }

        return result;
    }

    // "name": value, // what it is [default]
    [GeneratedRegex("""^\s*"(?<name>[a-z_]+)":[^\n]*//[^\n]*\[(?<default>[^\]\n]*)\]\s*$""", RegexOptions.Multiline)]
    private static partial Regex DefaultInBrackets();

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "iotdsd.dll"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "IotDsd.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no IotDsd.sln above {AppContext.BaseDirectory}");
    }
}

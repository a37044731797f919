using IotDsd.Tests.Infrastructure;
using System.Diagnostics;
using System.Security.Cryptography;

namespace IotDsd.Tests;

/// <summary>
/// <c>bench/gpu/prepare.sh</c> and <c>run.sh</c> on this machine: a small stand-in payload (the full publish with the
/// CUDA provider is 330 MB and minutes of compression) is cut into pieces no larger than asked, and run.sh reassembles,
/// verifies and unpacks it byte for byte, refuses a damaged piece, and refuses clearly where no CUDA library is found.
/// </summary>
public sealed class GpuRunScriptTests : IDisposable
{
    private static readonly string Repo = Repository.Root;
    private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-gpu-run-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [SkippableFact]
    public async Task Prepare_CutsIntoPieces_RunReassemblesThenRefusesWithoutCuda()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && (File.Exists("/usr/bin/xz") || File.Exists("/bin/xz")), "the scripts need bash and xz (Linux)");
        var payload = Directory.CreateDirectory(Path.Combine(_root, "payload")).FullName;
        var blob = new byte[2_500_000];
        new Random(19).NextBytes(blob); // incompressible: the archive spans several pieces
        File.WriteAllBytes(Path.Combine(payload, "iotdsd"), blob);
        Directory.CreateDirectory(Path.Combine(payload, "sub"));
        File.WriteAllText(Path.Combine(payload, "sub", "notes.txt"), "nested file\n");

        const int pieceBytes = 1 << 20;
        var pieces = Path.Combine(_root, "pieces");
        var prepare = await Repository.RunAsync("bash", [Path.Combine(Repo, "bench", "gpu", "prepare.sh"), pieces],
            new Dictionary<string, string> { ["IOTDSD_GPU_PAYLOAD"] = payload, ["IOTDSD_GPU_PIECE_BYTES"] = pieceBytes.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        Assert.True(prepare.Code == 0, prepare.Output);
        var parts = Directory.GetFiles(pieces, "iotdsd-gpu.tar.xz.*").Order(StringComparer.Ordinal).ToArray();
        Assert.True(parts.Length >= 3, string.Join(", ", parts));
        Assert.All(parts, p => Assert.InRange(new FileInfo(p).Length, 1, pieceBytes));
        var manifest = File.ReadAllLines(Path.Combine(pieces, "MANIFEST.sha256"));
        Assert.Equal(parts.Length + 1, manifest.Length); // every piece, then the whole archive
        foreach (var p in parts)
        {
            Assert.Contains($"{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(p)))}  {Path.GetFileName(p)}", manifest);
        }

        Assert.True(File.Exists(Path.Combine(pieces, "run.sh")));

        // No CUDA library where it is told to look: the payload is verified and unpacked, then a clear refusal.
        var empty = Directory.CreateDirectory(Path.Combine(_root, "no-cuda")).FullName;
        var noCuda = new Dictionary<string, string> { ["IOTDSD_CUDA_SEARCH"] = empty };
        var run = await Repository.RunAsync("bash", [Path.Combine(pieces, "run.sh"), Path.Combine(_root, "results")], noCuda);
        Assert.True(run.Code == 2, run.Output);
        Assert.Contains($"{parts.Length} piece(s) verified", run.Output, StringComparison.Ordinal);
        Assert.Contains("no CUDA library found for: libcudart.so.13", run.Output, StringComparison.Ordinal);
        Assert.Contains("libcudnn.so.9", run.Output, StringComparison.Ordinal);
        var unpacked = Path.Combine(pieces, "work", "bundle", "iotdsd");
        Assert.Equal(blob, File.ReadAllBytes(Path.Combine(unpacked, "iotdsd")));
        Assert.Equal("nested file\n", File.ReadAllText(Path.Combine(unpacked, "sub", "notes.txt")));

        // One byte changed in one piece: refused before anything is unpacked or run.
        using (var f = File.OpenWrite(parts[1]))
        {
            f.Position = 10;
            f.WriteByte((byte)(blob[0] ^ 0xFF));
        }

        var damaged = await Repository.RunAsync("bash", [Path.Combine(pieces, "run.sh"), Path.Combine(_root, "results")], noCuda);
        Assert.True(damaged.Code == 2, damaged.Output);
        Assert.Contains("does not match its sha256", damaged.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("no CUDA library", damaged.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// The dry run: every step of run.sh on the CPU provider with tiny sizes, on this build's CLI: both targets built
    /// (a preset that cannot be built refused, llama-tiny standing in), both drafts distilled, every JSON file written and parseable, each
    /// capacity file naming its system.
    /// </summary>
    [SkippableFact]
    public async Task Run_DryRun_EveryStepWritesItsJson()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the scripts need bash (Linux)");
        var folder = Directory.CreateDirectory(Path.Combine(_root, "dry")).FullName;
        File.Copy(Path.Combine(Repo, "bench", "gpu", "run.sh"), Path.Combine(folder, "run.sh"));
        var results = Path.Combine(_root, "dry-results");
        var run = await Repository.RunAsync("bash", [Path.Combine(folder, "run.sh"), results], new Dictionary<string, string>
        {
            ["IOTDSD_GPU_DRY_RUN"] = "1",
            ["IOTDSD_GPU_BUNDLE"] = AppContext.BaseDirectory,
            ["IOTDSD_GPU_LLAMA"] = "llama-2b llama-tiny", // a preset that cannot be built: the next one stands in
        });
        Assert.True(run.Code == 0, run.Output);
        Assert.Contains("the cpu provider loaded and ran a pass", run.Output, StringComparison.Ordinal);
        var steps = File.ReadAllLines(Path.Combine(results, "steps.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(16, steps.Count);
        Assert.Equal(["build-llama-2b"], steps.Where(s => s.GetProperty("rc").GetInt32() != 0).Select(s => s.GetProperty("step").GetString()));
        Assert.Contains("llama-2b", File.ReadAllText(Path.Combine(results, "build-llama-2b.txt.stderr")), StringComparison.Ordinal);
        foreach (var (target, system) in new[] { ("small", "baseline"), ("small", "iotdsd"), ("llama", "baseline"), ("llama", "iotdsd") })
        {
            using var capacity = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(results, $"capacity-{target}-{system}.json")));
            var only = Assert.Single(capacity.RootElement.GetProperty("systems").EnumerateArray());
            Assert.Equal(system, only.GetProperty("system").GetString());
            Assert.NotEmpty(only.GetProperty("runs").EnumerateArray());
        }

        foreach (var file in new[] { "provider-check.jsonl", "contexts-small.jsonl", "contexts-llama.jsonl" })
        {
            var lines = File.ReadAllLines(Path.Combine(results, file));
            Assert.NotEmpty(lines);
            Assert.All(lines, l => Assert.Equal("cpu", System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("provider").GetString()));
        }

        // The provider's greedy text against the CPU's: on the CPU itself, the same text.
        using (var equality = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(results, "equality.json"))))
            Assert.True(equality.RootElement.GetProperty("greedy_text_identical_to_cpu").GetBoolean());

        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(results, "run.json")));
        Assert.Equal("llama-tiny", summary.RootElement.GetProperty("llama_preset").GetString());
        Assert.Contains("fit ms", File.ReadAllText(Path.Combine(results, "models-small.txt")), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Prepare_PieceSizeOverLimit_Refused()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the scripts need bash (Linux)");
        var result = await Repository.RunAsync("bash", [Path.Combine(Repo, "bench", "gpu", "prepare.sh"), Path.Combine(_root, "out")],
            new Dictionary<string, string> { ["IOTDSD_GPU_PAYLOAD"] = _root, ["IOTDSD_GPU_PIECE_BYTES"] = "62914561" });
        Assert.Equal(2, result.Code);
        Assert.Contains("IOTDSD_GPU_PIECE_BYTES must be 1..62914560", result.Output, StringComparison.Ordinal);
    }
}

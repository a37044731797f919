using System.Globalization;
using Xunit.Abstractions;

namespace IotDsd.Fuzz;

/// <summary>
/// Runs every target with a fixed seed: over 1.33 million mutated inputs in total by default (IOTDSD_FUZZ_SCALE
/// multiplies the counts for longer runs, IOTDSD_FUZZ_SEED changes the seed). Fails on any crash, hang or runaway
/// allocation and prints the input; such inputs become cases in <see cref="RegressionTests"/>.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private static double Scale => double.TryParse(Environment.GetEnvironmentVariable("IOTDSD_FUZZ_SCALE"), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 1;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("IOTDSD_FUZZ_SEED"), out var s) ? s : 20250101;

    public static readonly TheoryData<string, int> Budgets = new()
    {
        { "wire", 800_000 },
        { "presence", 120_000 },
        { "configuration", 150_000 },
        { "tokenizer", 100_000 },
        { "manifest", 15_000 },
        { "journal", 30_000 },
        { "model-config", 15_000 },
        { "onnx-scan", 30_000 },
        { "tokenizer-json", 50_000 },
        { "tokenizer-bin", 20_000 },
        { "llama2c-checkpoint", 30_000 },
        { "special-tokens", 15_000 },
    };

    [Theory]
    [MemberData(nameof(Budgets))]
    public async Task Fuzz_Target_NoCrashHangOrRunawayAllocation(string name, int inputs)
    {
        // The manifest target writes a file per input: in memory where the machine has a tmpfs.
        var dir = Directory.Exists("/dev/shm")
            ? Directory.CreateDirectory(Path.Combine("/dev/shm", $"iotdsd-fuzz-{Guid.NewGuid():N}")).FullName
            : Directory.CreateTempSubdirectory("iotdsd-fuzz-").FullName;
        try
        {
            var target = name switch
            {
                "wire" => Targets.Wire(),
                "presence" => Targets.Presence(),
                "configuration" => Targets.Configuration(),
                "tokenizer" => Targets.Tokenizer(),
                "journal" => Targets.Journal(dir),
                "model-config" => Targets.ModelConfig(dir),
                "onnx-scan" => Targets.OnnxScan(dir),
                "tokenizer-json" => TokenizerTargets.TokenizerJson(),
                "tokenizer-bin" => TokenizerTargets.SentencePieceBin(),
                "llama2c-checkpoint" => Targets.Llama2cCheckpoint(),
                "special-tokens" => Targets.SpecialTokenFiles(dir),
                _ => Targets.Manifest(dir),
            };
            var count = (long)(inputs * Scale);
            var run = Task.Factory.StartNew(() => FuzzEngine.Run(target, count, Seed), TaskCreationOptions.LongRunning);
            var limit = TimeSpan.FromSeconds(Math.Max(120, 240 * Scale));
            if (await Task.WhenAny(run, Task.Delay(limit)) != run)
            {
                Assert.Fail($"{name}: no result within {limit.TotalSeconds:0} s; stuck on input {Convert.ToHexString(FuzzEngine.Current)}");
            }

            var report = await run;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{report.Target}: {report.Inputs} inputs in {report.Elapsed.TotalSeconds:0.0} s ({report.Inputs / report.Elapsed.TotalSeconds:0} /s), " +
                $"{report.Outcomes} distinct outcomes, corpus {report.CorpusSize}, slowest input {report.Slowest.TotalMilliseconds:0.0} ms, " +
                $"most allocated by one input {report.MaxAllocatedBytes / 1024.0:0.0} KiB"));
            Assert.True(report.Findings.Count == 0, string.Join("\n", report.Findings));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

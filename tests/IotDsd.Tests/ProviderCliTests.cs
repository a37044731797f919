using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// The per-model provider flags and settings through the real CLI: a bad provider or a CUDA provider that is not
/// installed is one line and exit 2, and a CUDA target does not drag a CPU draft along (nor the reverse).
/// </summary>
public sealed class ProviderCliTests
{
    [Theory]
    [InlineData("demo", "--draft-provider")]
    [InlineData("generate", "--target-provider")]
    [InlineData("demo", "--provider")]
    public async Task Cuda_NotInstalled_OneLineInstallHint(string command, string flag)
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(null, command, "--prompt", "Once", "--max-tokens", "2", flag, "cuda");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0", line, StringComparison.Ordinal);
        Assert.Contains("CUDA 13", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CudaTarget_CpuDraft_TheDraftAloneRunsOnTheCpu()
    {
        // edge loads the draft only: a CUDA target provider must not reach it.
        var (code, _, stderr) = await CliProcess.RunAsync(null, "edge", "--broker", "127.0.0.1:1", "--prompt", "Once", "--max-tokens", "2",
            "--provider", "cuda", "--draft-provider", "cpu");
        Assert.DoesNotContain("CUDA", stderr, StringComparison.Ordinal); // it got past loading: the broker is what fails
        Assert.NotEqual(0, code);
    }

    [Theory]
    [InlineData("verifier", "--target-provider", "tpu", "Models:TargetProvider = 'tpu' (from flag --target-provider) must be cpu or cuda")]
    [InlineData("device", "--draft-provider", "npu", "Models:DraftProvider = 'npu' (from flag --draft-provider) must be cpu or cuda")]
    public async Task Service_BadProviderSetting_RefusedAtCheckConfig(string role, string flag, string value, string expected)
    {
        var (code, _, stderr) = await CliProcess.RunAsync(null, role, "--check-config", flag, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verifier_ProviderSettings_ShownWithTheirSource()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(new Dictionary<string, string> { ["IOTDSD_MODELS__PROVIDER"] = "cuda" },
            "verifier", "--check-config", "--target-provider", "cpu");
        Assert.True(code == 0, stderr);
        Assert.Contains("Models:TargetProvider", stdout, StringComparison.Ordinal);
        Assert.Matches(@"Models:Provider\s+cuda\s+\[env IOTDSD_MODELS__PROVIDER\]", stdout);
        Assert.Matches(@"Models:TargetProvider\s+cpu\s+\[flag --target-provider\]", stdout);
    }
}

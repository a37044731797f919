using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;

namespace IotDsd.Inference.Tests;

/// <summary>The GPU paths that can be checked without a GPU: every misconfiguration fails loudly, never silently on the CPU.</summary>
public sealed class ExecutionProviderTests
{
    [Fact]
    public void CreateSessionOptions_CudaWithoutLibrary_SaysWhatToInstall()
    {
        var options = new InferenceOptions { Provider = ExecutionProviderKind.Cuda };
        var e = Assert.Throws<ExecutionProviderException>(() => options.CreateSessionOptions());
        Assert.Contains("no provider library was configured", e.Message);
        Assert.Contains("libonnxruntime_providers_cuda.so", e.Message);
    }

    [Fact]
    public void CreateSessionOptions_CudaLibraryMissing_NamesPathAndInstall()
    {
        var path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "libonnxruntime_providers_cuda.so");
        var options = new InferenceOptions { Provider = ExecutionProviderKind.Cuda, ProviderLibrary = path };
        var e = Assert.Throws<ExecutionProviderException>(() => options.CreateSessionOptions());
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.Contains("CUDA 13", e.Message);
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0", e.Message);
    }

    [Fact]
    public void CreateSessionOptions_LibraryNotAProvider_ClearError()
    {
        var path = Path.Combine(Path.GetTempPath(), "iotdsd-fake-ep-" + Guid.NewGuid().ToString("N") + ".so");
        File.WriteAllText(path, "not a shared library");
        try
        {
            var options = new InferenceOptions { Provider = ExecutionProviderKind.Cuda, ProviderLibrary = path };
            var e = Assert.Throws<ExecutionProviderException>(() => options.CreateSessionOptions());
            Assert.Contains("could not load the execution provider library", e.Message);
            Assert.Contains(path, e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(null, ExecutionProviderKind.Cpu)]
    [InlineData("cpu", ExecutionProviderKind.Cpu)]
    [InlineData("CUDA", ExecutionProviderKind.Cuda)]
    public void FromEnvironment_ExplicitProvider_Parsed(string? text, ExecutionProviderKind expected)
    {
        Assert.Equal(expected, InferenceOptions.FromEnvironment(text ?? "", "/x.so").Provider);
    }

    [Fact]
    public void FromEnvironment_UnknownProvider_ClearError()
    {
        var e = Assert.Throws<ExecutionProviderException>(() => InferenceOptions.FromEnvironment("tpu"));
        Assert.Contains("use cpu or cuda", e.Message);
    }

    [Fact]
    public void CreateSessionOptions_Cpu_Succeeds()
    {
        using var options = InferenceOptions.Default.CreateSessionOptions();
        Assert.NotNull(options);
    }
}

using IotDsd.Inference.Execution;

namespace IotDsd.Inference.Models;

/// <summary>How ONNX Runtime sessions are created: threads and execution provider (CPU by default).</summary>
public sealed record InferenceOptions
{
    public static readonly InferenceOptions Default = new();

    /// <summary>Threads inside one operator; 1 keeps small-device runs predictable.</summary>
    public int IntraOpThreads { get; init; } = 1;

    /// <summary>CPU, or CUDA through a plugin provider library. Asking for a GPU forbids falling back to the CPU.</summary>
    public ExecutionProviderKind Provider { get; init; } = ExecutionProviderKind.Cpu;

    /// <summary>Full path of the plugin provider library (for CUDA: libonnxruntime_providers_cuda.so).</summary>
    public string? ProviderLibrary { get; init; }

    /// <summary>Which GPU, among those the provider reports.</summary>
    public int DeviceId { get; init; }

    /// <summary>
    /// Allocates slot models' KV pools from the session's allocator even on the CPU (as on a GPU, where the pool must be
    /// device memory), so the device path's code runs, and is tested, without a GPU.
    /// </summary>
    internal bool KvThroughAllocator { get; init; }

    /// <summary>
    /// Options from <c>$IOTDSD_EXECUTION_PROVIDER</c> (cpu or cuda), <c>$IOTDSD_PROVIDER_LIBRARY</c> and
    /// <c>$IOTDSD_INTRA_OP_THREADS</c>; explicit
    /// arguments win over the environment.
    /// </summary>
    public static InferenceOptions FromEnvironment(string? provider = null, string? library = null)
    {
        var text = provider ?? Environment.GetEnvironmentVariable(ExecutionProviders.ProviderEnvironmentVariable);
        if (!ExecutionProviders.TryParse(text, out var kind))
            throw new ExecutionProviderException($"Unknown execution provider '{text}'; use cpu or cuda.");
        var threads = Environment.GetEnvironmentVariable(ThreadsEnvironmentVariable);
        int intraOp = 1;
        if (!string.IsNullOrWhiteSpace(threads) &&
            (!int.TryParse(threads, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out intraOp) || intraOp is < 1 or > 256))
            throw new ExecutionProviderException($"${ThreadsEnvironmentVariable} must be a whole number of threads between 1 and 256, got '{threads}'.");
        return new InferenceOptions
        {
            Provider = kind,
            ProviderLibrary = library ?? Environment.GetEnvironmentVariable(ExecutionProviders.LibraryEnvironmentVariable),
            IntraOpThreads = intraOp,
        };
    }

    /// <summary>Threads inside one operator for every model a process loads (default 1).</summary>
    public const string ThreadsEnvironmentVariable = "IOTDSD_INTRA_OP_THREADS";

    internal Microsoft.ML.OnnxRuntime.SessionOptions CreateSessionOptions()
    {
        var o = new Microsoft.ML.OnnxRuntime.SessionOptions
        {
            IntraOpNumThreads = IntraOpThreads,
            InterOpNumThreads = 1,
            ExecutionMode = Microsoft.ML.OnnxRuntime.ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = Microsoft.ML.OnnxRuntime.OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        try
        {
            ExecutionProviders.Configure(o, this);
        }
        catch
        {
            o.Dispose();
            throw;
        }
        return o;
    }
}

namespace IotDsd.Inference.Models;

/// <summary>How ONNX Runtime sessions are created (CPU execution provider).</summary>
public sealed record InferenceOptions
{
    public static readonly InferenceOptions Default = new();

    /// <summary>Threads inside one operator; 1 keeps small-device runs predictable.</summary>
    public int IntraOpThreads { get; init; } = 1;

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
        return o;
    }
}

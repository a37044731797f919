using IotDsd.Inference.Models;
using Microsoft.ML.OnnxRuntime;

namespace IotDsd.Inference.Execution;

/// <summary>Where ONNX Runtime runs a model.</summary>
public enum ExecutionProviderKind
{
    /// <summary>ONNX Runtime's CPU provider (the default; always available).</summary>
    Cpu,

    /// <summary>
    /// NVIDIA CUDA through ONNX Runtime's plugin execution-provider API: the provider library is loaded at run time
    /// from <see cref="InferenceOptions.ProviderLibrary"/>, so the default build stays CPU-only and restorable.
    /// </summary>
    Cuda,
}

/// <summary>Registers plugin execution-provider libraries and appends their devices to session options.</summary>
public static class ExecutionProviders
{
    public const string ProviderEnvironmentVariable = "IOTDSD_EXECUTION_PROVIDER";
    public const string LibraryEnvironmentVariable = "IOTDSD_PROVIDER_LIBRARY";

    /// <summary>Session option that turns a silent fall-back of GPU-assigned nodes to the CPU into an error.</summary>
    public const string DisableCpuFallback = "session.disable_cpu_ep_fallback";

    /// <summary>What to install for the CUDA provider, and how to name it.</summary>
    public const string Install = "Install the CUDA execution provider of ONNX Runtime 1.32 (libonnxruntime_providers_cuda.so from the NuGet " +
        "package Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0, with CUDA 13 (libcudart.so.13, libcublas.so.13, libcublasLt.so.13) " +
        "and cuDNN 9 on the library path) and pass its full path " +
        $"(--provider-library or ${LibraryEnvironmentVariable}), or run on the CPU (provider cpu).";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, string> Registered = new(StringComparer.Ordinal);

    /// <summary>Parses cpu/cuda (case-insensitive).</summary>
    public static bool TryParse(string? text, out ExecutionProviderKind kind)
    {
        kind = ExecutionProviderKind.Cpu;
        switch (text?.Trim().ToLowerInvariant())
        {
            case null or "" or "cpu": return true;
            case "cuda" or "gpu": kind = ExecutionProviderKind.Cuda; return true;
            default: return false;
        }
    }

    /// <summary>
    /// Adds the configured GPU provider to <paramref name="options"/> and forbids CPU fall-back; does nothing for the CPU.
    /// Throws <see cref="ExecutionProviderException"/> with what to install when the library or a device is missing.
    /// </summary>
    internal static void Configure(SessionOptions options, InferenceOptions config)
    {
        if (config.Provider == ExecutionProviderKind.Cpu) return;
        var library = config.ProviderLibrary;
        if (string.IsNullOrWhiteSpace(library))
            throw new ExecutionProviderException($"The CUDA execution provider was asked for but no provider library was configured. {Install}");
        library = Path.GetFullPath(library);
        if (!File.Exists(library))
            throw new ExecutionProviderException($"The CUDA execution provider library '{library}' does not exist. {Install}");

        var env = OrtEnv.Instance();
        string name;
        lock (Gate)
        {
            if (!Registered.TryGetValue(library, out name!))
            {
                name = $"iotdsd-cuda-{Registered.Count}";
                try
                {
                    env.RegisterExecutionProviderLibrary(name, library);
                }
                catch (OnnxRuntimeException e)
                {
                    throw new ExecutionProviderException($"ONNX Runtime could not load the execution provider library '{library}': {e.Message} " +
                        $"It must be an ONNX Runtime 1.32 provider whose dependencies (CUDA 13, cuDNN 9) are on the library path. {Install}", e);
                }
                Registered[library] = name;
            }
        }

        var devices = env.GetEpDevices().Where(d => d.HardwareDevice.Type == OrtHardwareDeviceType.GPU && d.EpName.Contains("CUDA", StringComparison.OrdinalIgnoreCase)).ToList();
        if (devices.Count == 0)
            throw new ExecutionProviderException($"The provider library '{library}' loaded, but ONNX Runtime found no CUDA GPU device " +
                "(check the NVIDIA driver and that a GPU is visible to this process, e.g. nvidia-smi and CUDA_VISIBLE_DEVICES).");
        options.AppendExecutionProvider(env, [devices[Math.Clamp(config.DeviceId, 0, devices.Count - 1)]], new Dictionary<string, string>());
        options.AddSessionConfigEntry(DisableCpuFallback, "1");
    }
}

/// <summary>The requested execution provider cannot be used; the message says what to install or change.</summary>
public sealed class ExecutionProviderException(string message, Exception? inner = null) : Exception(message, inner);

using IotDsd.Inference.Models;

namespace IotDsd.Inference.Execution;

/// <summary>
/// Turns ONNX Runtime's refusal of a graph on a GPU provider into a message that names the model, the operators at
/// fault and what to do. ONNX Runtime's own text ("This session contains graph nodes that are assigned to the default
/// CPU EP, but fallback to CPU EP has been explicitly disabled by the user.") names no node.
/// </summary>
public static class ProviderFailures
{
    /// <summary>The part of ONNX Runtime's error text that says a node would have run on the CPU.</summary>
    public const string FallbackRefused = "fallback to CPU EP has been explicitly disabled";

    /// <summary>
    /// Domains of which ONNX Runtime's CUDA provider implements no operator: ONNX-ML (LabelEncoder, TreeEnsemble, ...)
    /// and the preview training domain.
    /// </summary>
    private static readonly string[] NoCudaKernels = ["ai.onnx.ml", "ai.onnx.preview.training"];

    /// <summary>
    /// The message for a model that <paramref name="provider"/> refused because some node would need the CPU, or null
    /// when <paramref name="ortMessage"/> is some other error. <paramref name="operators"/> are the graph's operators as
    /// <c>domain:op_type</c> (<see cref="Onnx.OnnxOperators.Read"/>).
    /// </summary>
    public static string? Describe(string ortMessage, string model, ExecutionProviderKind provider, IEnumerable<string> operators)
    {
        ArgumentNullException.ThrowIfNull(ortMessage);
        ArgumentNullException.ThrowIfNull(operators);
        if (provider == ExecutionProviderKind.Cpu || !ortMessage.Contains(FallbackRefused, StringComparison.OrdinalIgnoreCase)) return null;
        var name = provider.ToString().ToLowerInvariant();
        var lacking = operators
            .Select(o => (Domain: o[..Math.Max(0, o.LastIndexOf(':'))], Op: o[(o.LastIndexOf(':') + 1)..]))
            .Where(o => NoCudaKernels.Contains(o.Domain, StringComparer.Ordinal))
            .Select(o => $"{o.Op} ({o.Domain})")
            .Order(StringComparer.Ordinal)
            .ToList();
        var what = lacking.Count > 0
            ? $"its graph uses {string.Join(", ", lacking)}, which ONNX Runtime's {name} provider does not implement"
            : $"one of its operators has no {name} kernel in this ONNX Runtime build";
        return $"The model '{model}' cannot run on provider {name}: {what}, and falling back to the CPU is forbidden on a GPU " +
            $"provider. Run this model on the CPU (--draft-provider cpu or --target-provider cpu; settings Models:DraftProvider, " +
            "Models:TargetProvider).";
    }

    /// <summary>
    /// Rethrows a load failure of the model at <paramref name="path"/> as an <see cref="ExecutionProviderException"/>
    /// naming the operators when the provider refused the graph; otherwise does nothing.
    /// </summary>
    internal static void ThrowIfRefused(Exception failure, string path, string modelFile, InferenceOptions options)
    {
        if (options.Provider == ExecutionProviderKind.Cpu) return;
        for (var e = failure; e is not null; e = e.InnerException)
        {
            if (!e.Message.Contains(FallbackRefused, StringComparison.OrdinalIgnoreCase)) continue;
            IReadOnlySet<string> operators;
            try
            {
                operators = Onnx.OnnxOperators.Read(modelFile);
            }
            catch (Exception read) when (read is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                operators = new HashSet<string>();
            }

            throw new ExecutionProviderException(Describe(e.Message, path, options.Provider, operators)!, failure);
        }
    }
}

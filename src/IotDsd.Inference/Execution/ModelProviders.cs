using IotDsd.Inference.Models;

namespace IotDsd.Inference.Execution;

/// <summary>
/// Where each model of a pair runs: the draft and the target get their own <see cref="InferenceOptions"/>, so a CPU
/// draft (an n-gram graph whose ONNX-ML operators have no CUDA kernels) can sit beside a CUDA target in one process.
/// </summary>
public sealed record ModelProviders(InferenceOptions Draft, InferenceOptions Target)
{
    /// <summary>The draft's provider when no draft provider is given (cpu or cuda); else the common one.</summary>
    public const string DraftEnvironmentVariable = "IOTDSD_DRAFT_PROVIDER";

    /// <summary>The target's provider when no target provider is given (cpu or cuda); else the common one.</summary>
    public const string TargetEnvironmentVariable = "IOTDSD_TARGET_PROVIDER";

    /// <summary>Both models on the same options.</summary>
    public static ModelProviders Both(InferenceOptions options) => new(options, options);

    /// <summary>
    /// Resolves each model's provider: its own value (<paramref name="draft"/>, <paramref name="target"/>), else
    /// <c>$IOTDSD_DRAFT_PROVIDER</c> / <c>$IOTDSD_TARGET_PROVIDER</c>, else the common <paramref name="provider"/>,
    /// else <c>$IOTDSD_EXECUTION_PROVIDER</c>, else cpu. Empty strings count as not given. The library and thread
    /// count come from <see cref="InferenceOptions.FromEnvironment"/>.
    /// </summary>
    /// <exception cref="ExecutionProviderException">A provider that is neither cpu nor cuda; the message names where it came from.</exception>
    public static ModelProviders Resolve(string? provider = null, string? draft = null, string? target = null, string? library = null)
    {
        var common = InferenceOptions.FromEnvironment(Given(provider), Given(library));
        return new ModelProviders(
            With(common, Given(draft) ?? Given(Environment.GetEnvironmentVariable(DraftEnvironmentVariable)), "draft"),
            With(common, Given(target) ?? Given(Environment.GetEnvironmentVariable(TargetEnvironmentVariable)), "target"));
    }

    private static InferenceOptions With(InferenceOptions common, string? text, string role)
    {
        if (text is null) return common;
        if (!ExecutionProviders.TryParse(text, out var kind))
            throw new ExecutionProviderException($"Unknown {role} execution provider '{text}'; use cpu or cuda.");
        return common with { Provider = kind };
    }

    private static string? Given(string? text) => string.IsNullOrWhiteSpace(text) ? null : text;
}

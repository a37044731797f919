using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;
using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Tests;

/// <summary>A provider per model: resolution order, per-model loading, and the message for an operator a GPU provider lacks.</summary>
[Collection(DefaultPairCollection.Name)]
public sealed class ModelProvidersTests(DefaultPairFixture pair)
{
    /// <summary>ONNX Runtime's text when a node would need the CPU and fall-back is disabled (inference_session.cc).</summary>
    private const string OrtRefusal = "[ErrorCode:Fail] This session contains graph nodes that are assigned to the default CPU EP, " +
        "but fallback to CPU EP has been explicitly disabled by the user.";

    [Fact]
    public void Resolve_PerModelOverridesCommon()
    {
        var p = ModelProviders.Resolve(provider: "cuda", draft: "cpu", library: "/x.so");
        Assert.Equal(ExecutionProviderKind.Cpu, p.Draft.Provider);
        Assert.Equal(ExecutionProviderKind.Cuda, p.Target.Provider);
        Assert.Equal("/x.so", p.Target.ProviderLibrary);

        var q = ModelProviders.Resolve(provider: "cpu", target: "CUDA", draft: " ");
        Assert.Equal(ExecutionProviderKind.Cuda, q.Target.Provider);
        Assert.Equal(ExecutionProviderKind.Cpu, q.Draft.Provider); // blank counts as not given: the common provider
    }

    [Fact]
    public void Resolve_UnknownPerModelProvider_NamesTheModel()
    {
        var e = Assert.Throws<ExecutionProviderException>(() => ModelProviders.Resolve(provider: "cpu", target: "tpu"));
        Assert.Equal("Unknown target execution provider 'tpu'; use cpu or cuda.", e.Message);
    }

    [Fact]
    public void Load_CpuDraftBesideCudaTarget_DraftOnTheCpuLoads_CudaDraftRefused()
    {
        var cuda = new InferenceOptions { Provider = ExecutionProviderKind.Cuda }; // no library here: it cannot load
        using (var models = ModelPair.Load(pair.DraftDir, null, true, false, new ModelProviders(InferenceOptions.Default, cuda)))
        {
            Assert.NotNull(models.Draft); // the draft went to the CPU although the target's provider is CUDA
        }

        var e = Assert.Throws<ModelPairException>(() => ModelPair.Load(pair.DraftDir, null, true, false, new ModelProviders(cuda, InferenceOptions.Default)));
        Assert.Contains("ONNX Runtime 1.32", e.Message);
        Assert.Contains("CUDA 13 (libcudart.so.13, libcublas.so.13", e.Message);
        Assert.Contains("cuDNN 9", e.Message);

        var t = Assert.Throws<ModelPairException>(() => ModelPair.Load(pair.DraftDir, pair.TargetDir, true, true, new ModelProviders(InferenceOptions.Default, cuda)));
        Assert.Contains("no provider library was configured", t.Message);
    }

    [Fact]
    public void Describe_NgramDraftOnCuda_NamesLabelEncoderAndTheModel()
    {
        var model = ModelDirectory.FilePath(pair.DraftDir, ModelDirectory.ReadManifest(pair.DraftDir));
        var operators = OnnxOperators.Read(model);
        Assert.Contains("ai.onnx.ml:LabelEncoder", operators); // the shipped n-gram graph really uses it

        var message = ProviderFailures.Describe(OrtRefusal, pair.DraftDir, ExecutionProviderKind.Cuda, operators);
        Assert.NotNull(message);
        Assert.StartsWith($"The model '{pair.DraftDir}' cannot run on provider cuda: its graph uses LabelEncoder (ai.onnx.ml)", message);
        Assert.Contains("--draft-provider cpu", message);
        Assert.DoesNotContain('\n', message);
    }

    [Fact]
    public void Describe_OtherErrorsAndTheCpu_LeftAlone()
    {
        Assert.Null(ProviderFailures.Describe("[ErrorCode:NoSuchFile] Load model from x failed", "m", ExecutionProviderKind.Cuda, ["ai.onnx.ml:LabelEncoder"]));
        Assert.Null(ProviderFailures.Describe(OrtRefusal, "m", ExecutionProviderKind.Cpu, ["ai.onnx.ml:LabelEncoder"]));
        var unknown = ProviderFailures.Describe(OrtRefusal, "m", ExecutionProviderKind.Cuda, [":MatMul", "com.microsoft:GroupQueryAttention"]);
        Assert.Contains("one of its operators has no cuda kernel", unknown);
    }
}

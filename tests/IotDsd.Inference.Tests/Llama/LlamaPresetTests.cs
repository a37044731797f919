using IotDsd.Inference.Llama;
using IotDsd.Inference.Models;
using IotDsd.Inference.Onnx;

namespace IotDsd.Inference.Tests.Llama;

/// <summary>
/// The Llama presets from random weights. llama-1b itself (4.4 GB of float32 weights, written with external data) is not
/// built here: its shape is checked, and llama-tiny — the same family (grouped-query attention, RoPE, RMSNorm, SwiGLU, untied output, vocabulary
/// 32,000) — is built, loaded and run.
/// </summary>
public sealed class LlamaPresetTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-llama-preset-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Llama1b_IsTheOneBillionLlamaShape()
    {
        var s = LlamaPresets.Shape("llama-1b");
        Assert.Equal((16, 2048, 32, 8, 8192, 32000, 64), (s.Layers, s.Dim, s.Heads, s.KvHeads, s.HiddenDim, s.VocabSize, s.HeadDim));
        Assert.InRange(Llama2cCheckpoint.ParameterCount(s), 1_090_000_000L, 1_110_000_000L);
        Assert.Equal(4, LlamaPresets.Shape("llama-1b", "draft").Layers);
    }

    [Fact]
    public void LlamaTiny_BuildsLoadsAndRunsAPass_SameSeedSameModel()
    {
        var dir = Path.Combine(_root, "tiny");
        var manifest = LlamaPresets.Build("llama-tiny", "target", 3, dir);
        Assert.Equal(32000, manifest.VocabSize);
        var ops = OnnxOperators.Read(Path.Combine(dir, manifest.Files[ModelManifest.ModelFileKey]));
        Assert.DoesNotContain(ops, o => o.StartsWith("ai.onnx.ml:", StringComparison.Ordinal)); // nothing a GPU provider lacks

        using var model = ModelDirectory.Load(dir);
        Assert.Equal(32000, model.VocabSize);
        var logits = new float[2 * model.VocabSize];
        using (var seq = model.CreateSequence()) seq.Feed([1, 400, 31_999], logits);
        Assert.All(logits, l => Assert.True(float.IsFinite(l)));
        Assert.True(logits.AsSpan(0, 32000).ToArray().Distinct().Count() > 1000); // random weights, not a constant row

        var again = Path.Combine(_root, "again");
        LlamaPresets.Build("llama-tiny", "target", 3, again);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "model.onnx")), File.ReadAllBytes(Path.Combine(again, "model.onnx")));
        var tokenizer = Tokenizers.TokenizerFactory.ForModelDirectory(dir);
        var ids = tokenizer.Encode("Once upon a time");
        Assert.NotEmpty(ids);
        Assert.All(ids, id => Assert.InRange(id, 3, 511)); // stories260K's pieces; the padding is never produced
    }

    [Fact]
    public void WeightsPastTheThreshold_GoBesideTheGraph_AndGiveTheSameLogits()
    {
        // llama-1b's 4.4 GB take this path on a GPU host; llama-tiny with the threshold at 0 takes it here.
        var checkpoint = Llama2cCheckpoint.Random(LlamaPresets.Shape("llama-tiny"), 5);
        var inline = Path.Combine(_root, "inline.onnx");
        var external = Path.Combine(_root, "ext", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(external)!);
        Assert.Null(LlamaGraph.Save(checkpoint, inline, "tiny"));
        Assert.Equal(LlamaGraph.ExternalDataFile, LlamaGraph.Save(checkpoint, external, "tiny", externalAbove: 0));
        Assert.True(new FileInfo(external).Length < new FileInfo(inline).Length / 10);
        Assert.True(new FileInfo(Path.Combine(_root, "ext", LlamaGraph.ExternalDataFile)).Length > new FileInfo(inline).Length * 9 / 10);

        float[] Row(string path)
        {
            using var model = IotDsd.Inference.Transformer.TransformerModel.Open(path, "tiny");
            using var seq = model.CreateSequence();
            var row = new float[model.VocabSize];
            seq.Feed([1, 400, 7], row);
            return row;
        }

        Assert.Equal(Row(inline), Row(external));
    }

    [Fact]
    public void Vocabulary_PadsTheShippedPiecesWithDistinctOnes()
    {
        var v = LlamaPresets.Vocabulary(32000);
        Assert.Equal(32000, v.Count);
        Assert.Equal(32000, v.Select(e => e.Piece).Distinct(StringComparer.Ordinal).Count());
        Assert.Equal("<s>", v[1].Piece);
        Assert.Equal("<0x00>", v[3].Piece);
    }
}

using System.Text;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Inference.Models;
using IotDsd.Inference.Onnx;
using IotDsd.Inference.Transformer;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests.Transformer;

/// <summary>
/// The exports users bring, each as a tiny fixture in the real signature (<see cref="ExportFixture"/>): each loads and
/// its logits and greedy output match the plain float32 fixture of the same weights, or it is refused with one line
/// that says what to change.
/// </summary>
public sealed class ExportVariantTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-exports-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static readonly ExportSpec Reference = new();

    private string NewDir(string name) => Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8]);

    private TransformerModel OpenSpec(ExportSpec spec, string name)
    {
        var path = Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8] + ".onnx");
        ExportFixture.Write(spec, path);
        return TransformerModel.Open(path, name);
    }

    /// <summary>
    /// A prompt, three greedy steps, a verification-sized chunk, a rollback, a growth past the first 32-slot capacity,
    /// then eight more greedy steps: every logits row and every greedy token.
    /// </summary>
    private static (float[] Logits, int[] Greedy) Script(ILanguageModel model)
    {
        int v = model.VocabSize;
        var rows = new List<float>();
        var greedy = new List<int>();
        using var seq = model.CreateSequence();
        void Feed(int[] tokens, int wanted)
        {
            var logits = new float[wanted * v];
            seq.Feed(tokens, logits);
            rows.AddRange(logits);
        }
        int Next() => Distribution.ArgMax(rows.ToArray().AsSpan(rows.Count - v, v));

        Feed(Bytes("Once upon a time"), 16);
        for (int i = 0; i < 3; i++)
        {
            int t = Next();
            greedy.Add(t);
            Feed([t], 1);
        }
        Feed(Bytes(" abc"), 4);
        seq.Truncate(seq.Length - 2);
        Feed(Bytes("xy"), 2);
        Feed(Bytes(" there lived a tiny model in a tiny graph."), 1);
        for (int i = 0; i < 8; i++)
        {
            int t = Next();
            greedy.Add(t);
            Feed([t], 1);
        }
        return (rows.ToArray(), greedy.ToArray());
    }

    private static int[] Bytes(string s) => Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    private void AssertSame((float[] Logits, int[] Greedy) expected, (float[] Logits, int[] Greedy) actual, float tolerance, string what)
    {
        Assert.Equal(expected.Logits.Length, actual.Logits.Length);
        float worst = 0;
        for (int i = 0; i < expected.Logits.Length; i++) worst = Math.Max(worst, Math.Abs(expected.Logits[i] - actual.Logits[i]));
        output.WriteLine($"{what}: max |logit difference| {worst:G3} over {expected.Logits.Length} logits; greedy {string.Join(",", actual.Greedy)}");
        Assert.True(worst <= tolerance, $"{what}: max |logit difference| {worst} > {tolerance}");
        Assert.Equal(expected.Greedy, actual.Greedy);
    }

    public static TheoryData<string> Variants => new(VariantSpecs.Keys);

    private static readonly Dictionary<string, (ExportSpec Spec, ExportSpec Reference, float Tolerance)> VariantSpecs = new()
    {
        ["int32 input_ids and attention_mask"] = (Reference with { Ids = OnnxDataType.Int32, Mask = OnnxDataType.Int32 }, Reference, 1e-4f),
        ["no position_ids (positions from the past's length)"] = (Reference with { PositionIds = false }, Reference, 1e-4f),
        ["merged decoder with use_cache_branch"] = (Reference with { Merged = true }, Reference, 1e-4f),
        ["stacked past_%d / present_%d (ORT's GPT-2 converter)"] = (Reference with { Stacked = true }, Reference, 1e-4f),
        ["stacked past_%d, no position_ids"] = (Reference with { Stacked = true, PositionIds = false }, Reference, 1e-4f),
        ["float16 weights, cache and logits"] = (Reference with { Type = OnnxDataType.Float16 }, Reference, 0.02f),
        ["bfloat16 cache and logits (cast at the boundary)"] = (Reference with { Type = OnnxDataType.BFloat16, CastAtBoundary = true }, Reference, 0.05f),
        ["genai GroupQueryAttention, no position_ids"] = (Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false }, Reference, 1e-4f),
        ["genai GroupQueryAttention, float16"] = (Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false, Type = OnnxDataType.Float16 }, Reference, 0.02f),
        ["RotaryEmbedding + MultiHeadAttention"] = (Reference with { Attention = FixtureAttention.MultiHead, KvHeads = 4 }, Reference with { KvHeads = 4 }, 1e-4f),
        ["int8 weights (DequantizeLinear)"] = (Reference with { Weights = FixtureWeights.Int8 }, Reference with { Weights = FixtureWeights.Int8, Dequantized = true }, 0.1f),
        ["int4 weights (MatMulNBits)"] = (Reference with { Weights = FixtureWeights.Int4 }, Reference with { Weights = FixtureWeights.Int4, Dequantized = true }, 1e-3f),
        ["genai int4: GroupQueryAttention + MatMulNBits"] = (Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false, Weights = FixtureWeights.Int4 },
            Reference with { Weights = FixtureWeights.Int4, Dequantized = true }, 1e-3f),
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void Variant_Loads_AndMatchesTheFloat32Reference(string variant)
    {
        var (spec, reference, tolerance) = VariantSpecs[variant];
        using var expectedModel = OpenSpec(reference, "reference");
        using var model = OpenSpec(spec, "variant");
        Assert.Equal(256, model.VocabSize);
        Assert.Equal(spec.Layers, model.Layers);
        Assert.Equal(spec.KvHeads, model.KvHeads);
        Assert.Equal(spec.CastAtBoundary || spec.Type == OnnxDataType.Float ? (spec.Type == OnnxDataType.BFloat16 ? TensorElementType.BFloat16 : TensorElementType.Float)
            : TensorElementType.Float16, model.CacheType);
        var expectedLayout = spec.Attention == FixtureAttention.GroupQuery ? KvLayout.Seqlens : spec.PositionIds ? KvLayout.Concat : KvLayout.Exact;
        Assert.Equal(expectedLayout, model.Layout);
        AssertSame(Script(expectedModel), Script(model), tolerance, variant);
    }

    [Theory]
    [InlineData(FixtureAttention.Plain, true, false)]
    [InlineData(FixtureAttention.Plain, false, false)]
    [InlineData(FixtureAttention.GroupQuery, false, false)]
    [InlineData(FixtureAttention.GroupQuery, false, true)]
    [InlineData(FixtureAttention.Plain, true, false, true)]
    public void FeedBatch_RaggedLengths_EqualsOneAtATime(FixtureAttention attention, bool positionIds, bool singleTokens, bool stacked = false)
    {
        using var model = OpenSpec(Reference with { Attention = attention, PositionIds = positionIds, Type = OnnxDataType.Float16, Stacked = stacked }, "batch");
        int v = model.VocabSize;
        string[] prefixes = ["Q: Why", "A long prefix, much longer than the others in this batch", "x", ""];
        string[] chunks = singleTokens ? [" ", "!", "m", "A"] : [" did the chicken", "!", " marks the spot", "A fresh sequence"];
        var batched = prefixes.Select(_ => model.CreateSequence()).ToArray();
        var single = prefixes.Select(_ => model.CreateSequence()).ToArray();
        try
        {
            var requests = new List<FeedRequest>();
            for (int i = 0; i < prefixes.Length; i++)
            {
                batched[i].Feed(Bytes(prefixes[i]), []);
                single[i].Feed(Bytes(prefixes[i]), []);
                requests.Add(new FeedRequest(batched[i], Bytes(chunks[i]), new float[chunks[i].Length * v]));
            }
            model.FeedBatch(requests);
            for (int i = 0; i < prefixes.Length; i++)
            {
                var expected = new float[chunks[i].Length * v];
                single[i].Feed(Bytes(chunks[i]), expected);
                var actual = requests[i].Logits.ToArray();
                for (int j = 0; j < expected.Length; j++) Assert.True(Math.Abs(expected[j] - actual[j]) <= 2e-3f, $"row {i}, logit {j}: {expected[j]} vs {actual[j]}");
                var a = new float[v];
                var b = new float[v];
                batched[i].Feed(Bytes(" then"), a);
                single[i].Feed(Bytes(" then"), b);
                for (int j = 0; j < v; j++) Assert.True(Math.Abs(a[j] - b[j]) <= 2e-3f, $"continuation {i}, logit {j}: {b[j]} vs {a[j]}");
            }
        }
        finally
        {
            foreach (var s in batched.Concat(single)) s.Dispose();
        }
    }

    [Theory]
    [InlineData(FixtureAttention.Plain, OnnxDataType.Float16, false)]
    [InlineData(FixtureAttention.GroupQuery, OnnxDataType.Float16, false)]
    [InlineData(FixtureAttention.Plain, OnnxDataType.Float, true)]
    public void SteadyStateDecode_AllocatesNoManagedMemory(FixtureAttention attention, OnnxDataType type, bool stacked)
    {
        using var model = OpenSpec(Reference with { Attention = attention, PositionIds = attention == FixtureAttention.Plain, Type = type, Stacked = stacked }, "alloc");
        using var seq = model.CreateSequence();
        var row = new float[model.VocabSize];
        seq.Feed(Bytes("Warm up"), row);
        for (int i = 0; i < 3; i++) seq.Feed([Distribution.ArgMax(row)], row);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 15; i++) seq.Feed([Distribution.ArgMax(row)], row); // stays inside the 32-slot capacity
        long perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / 15;
        output.WriteLine($"{attention} {type}{(stacked ? " stacked" : "")}: {perStep} managed bytes per decode step");
        Assert.Equal(0, perStep);
    }

    [Fact]
    public void OptimumDirectory_MergedDecoderFile_Loads()
    {
        var dir = ExportFixture.OptimumDirectory(Reference with { Merged = true }, NewDir("merged"), file: "decoder_model_merged.onnx");
        using var expected = OpenSpec(Reference, "reference");
        using var model = ModelDirectory.Load(dir);
        AssertSame(Script(expected), Script(model), 1e-4f, "decoder_model_merged.onnx");
    }

    [Fact]
    public void OptimumDirectory_ExternalData_Loads()
    {
        var dir = ExportFixture.OptimumDirectory(Reference, NewDir("external"), externalData: "model.onnx.data");
        Assert.True(new FileInfo(Path.Combine(dir, "model.onnx")).Length < 16_384, "the weights are outside model.onnx");
        using var expected = OpenSpec(Reference, "reference");
        using var model = ModelDirectory.Load(dir);
        AssertSame(Script(expected), Script(model), 1e-4f, "model.onnx + model.onnx.data");
    }

    [Fact]
    public void GenAiDirectory_Int4GroupQueryExternalData_Loads()
    {
        var spec = Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false, Weights = FixtureWeights.Int4 };
        var dir = ExportFixture.GenAiDirectory(spec, NewDir("genai"));
        Assert.False(File.Exists(Path.Combine(dir, "config.json")));
        using var expected = OpenSpec(Reference with { Weights = FixtureWeights.Int4, Dequantized = true }, "reference");
        using var model = (TransformerModel)ModelDirectory.Load(dir);
        Assert.Equal("llama", model.Name);
        Assert.Equal(KvLayout.Seqlens, model.Layout);
        Assert.Equal(256, model.MaxPositions);
        AssertSame(Script(expected), Script(model), 1e-3f, "genai_config.json + GroupQueryAttention + MatMulNBits");
    }

    [Fact]
    public void GenAiDirectory_NamedDecoderFileBesideConfigJson_FollowsGenAiConfig()
    {
        // A genai folder as the Phi-3 ONNX releases lay it out: a long decoder file name, genai_config.json and config.json.
        var spec = Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false, Weights = FixtureWeights.Int4 };
        const string file = "tiny-cpu-int4-rtn-block-16.onnx";
        var dir = ExportFixture.GenAiDirectory(spec, NewDir("genai-named"), externalData: file + ".data", file: file);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\":\"llama\",\"vocab_size\":256,\"num_hidden_layers\":2}");
        using var expected = OpenSpec(Reference with { Weights = FixtureWeights.Int4, Dequantized = true }, "reference");
        using var model = ModelDirectory.Load(dir);
        AssertSame(Script(expected), Script(model), 1e-3f, "genai_config.json naming " + file);
    }

    [Fact]
    public void GenAiDirectory_OtherCacheNames_FollowsTheConfig()
    {
        var spec = Reference with
        {
            PastKey = "past_key_%d", PastValue = "past_value_%d", PresentKey = "present_key_%d", PresentValue = "present_value_%d",
        };
        var dir = ExportFixture.GenAiDirectory(spec, NewDir("genai-names"), externalData: null);
        using var expected = OpenSpec(Reference, "reference");
        using var model = ModelDirectory.Load(dir);
        AssertSame(Script(expected), Script(model), 1e-4f, "genai names past_key_%d/present_key_%d");
    }

    [Fact]
    public void GenAiDirectory_StackedPastNames_Loads()
    {
        var dir = ExportFixture.GenAiDirectory(Reference with { Stacked = true, Type = OnnxDataType.Float16 }, NewDir("genai-stacked"), externalData: null);
        using var expected = OpenSpec(Reference, "reference");
        using var model = ModelDirectory.Load(dir);
        AssertSame(Script(expected), Script(model), 0.02f, "genai past_names past_%d / present_names present_%d");
    }

    [Fact]
    public void RunTimeRefusal_IsALoadErrorOfOneLine()
    {
        // ONNX Runtime's CPU GroupQueryAttention needs a head size that is a multiple of 16; it says so only when it runs.
        var path = Path.Combine(_root, "gqa-head8.onnx");
        ExportFixture.Write(Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false, Hidden = 32 }, path);
        var e = Assert.Throws<ModelLoadException>(() => TransformerModel.Open(path, "gqa"));
        output.WriteLine(e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("a first forward pass fails", e.Message);
        Assert.Contains("head_size shall be a multiple of 16", e.Message);
    }

    [Fact]
    public void BFloat16Compute_OnCpu_LoadsOrIsRefusedWithOneLine()
    {
        var path = Path.Combine(_root, "bf16.onnx");
        ExportFixture.Write(Reference with { Type = OnnxDataType.BFloat16 }, path);
        try
        {
            using var model = TransformerModel.Open(path, "bf16");
            using var expected = OpenSpec(Reference, "reference");
            AssertSame(Script(expected), Script(model), 0.5f, "bfloat16 compute");
        }
        catch (ModelLoadException e)
        {
            output.WriteLine(e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains("computes in bfloat16", e.Message, StringComparison.Ordinal);
            Assert.Contains("convert it to float16 or float32", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("num_hidden_layers", 4, "num_hidden_layers 4", "2 layers")]
    [InlineData("vocab_size", 300, "vocab_size 300", "256 logits")]
    [InlineData("num_key_value_heads", 4, "num_key_value_heads 4", "2 key/value heads")]
    public void ConfigContradictingTheGraph_IsRefusedNamingFileAndMismatch(string key, int value, string says, string has)
    {
        var config = new Dictionary<string, object>
        {
            ["model_type"] = "llama", ["vocab_size"] = 256, ["max_position_embeddings"] = 256, ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
        };
        config[key] = value;
        var dir = ExportFixture.OptimumDirectory(Reference, NewDir("mismatch"), config: config);
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        output.WriteLine(e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
        Assert.Contains(says, e.Message);
        Assert.Contains(has, e.Message);
    }

    [Fact]
    public void GenAiConfigContradictingTheGraph_IsRefused()
    {
        var dir = ExportFixture.GenAiDirectory(Reference with { Attention = FixtureAttention.GroupQuery, PositionIds = false }, NewDir("genai-bad"), externalData: null);
        var path = Path.Combine(dir, "genai_config.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"head_size\":16", "\"head_size\":32", StringComparison.Ordinal));
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        output.WriteLine(e.Message);
        Assert.Contains("genai_config.json' says head_size 32", e.Message);
        Assert.Contains("head_dim 16", e.Message);
    }

    [Theory]
    [InlineData("{\"vocab_size\": \"many\"}", "vocab_size \"many\"")]
    [InlineData("{\"vocab_size\": 256, \"num_hidden_layers\": -1}", "num_hidden_layers -1")]
    [InlineData("[1, 2]", "not a JSON object")]
    [InlineData("{\"vocab_size\": 256", "not valid JSON")]
    public void InvalidConfig_IsRefusedWithOneLine(string json, string expected)
    {
        var dir = ExportFixture.OptimumDirectory(Reference, NewDir("invalid"));
        File.WriteAllText(Path.Combine(dir, "config.json"), json);
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Load(dir));
        output.WriteLine(e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void PaddedLogits_ProposeOnlyTheTokenizersIds()
    {
        var padded = Reference with { LogitsWidth = 320 };
        var dir = ExportFixture.OptimumDirectory(padded, NewDir("padded"));
        using var raw = TransformerModel.Open(Path.Combine(dir, "model.onnx"), "raw");
        using var model = (TransformerModel)ModelDirectory.Load(dir);
        Assert.Equal(320, raw.VocabSize);
        Assert.Equal(256, model.VocabSize);
        Assert.Equal(320, model.LogitsWidth);

        var prompt = Bytes("Once upon a time");
        var wide = new float[320];
        var narrow = new float[256];
        using (var s = raw.CreateSequence()) s.Feed(prompt, wide);
        using (var s = model.CreateSequence()) s.Feed(prompt, narrow);
        Assert.True(Distribution.ArgMax(wide) >= 256, "without masking the padded ids would win (the fixture boosts them)");
        Assert.Equal(wide.AsSpan(0, 256).ToArray(), narrow);
        Assert.InRange(Distribution.ArgMax(narrow), 0, 255);
    }

    [Fact]
    public void PaddedLogits_KeepTheAddedSpecialTokens()
    {
        var dir = ExportFixture.OptimumDirectory(Reference with { LogitsWidth = 320 }, NewDir("special"));
        var path = Path.Combine(dir, "tokenizer.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        json["added_tokens"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = 256, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        });
        File.WriteAllText(path, json.ToJsonString());
        Assert.Equal(257, VocabularyIdentity.Read(path).Size);
        using var model = (TransformerModel)ModelDirectory.Load(dir);
        Assert.Equal(257, model.VocabSize); // the end-of-text id past the byte vocabulary stays proposable
        Assert.Equal(320, model.LogitsWidth);
    }

    [Fact]
    public void VocabulariesDifferingOnlyByPadding_ShareTheirIdentity()
    {
        using var a = (TransformerModel)ModelDirectory.Load(ExportFixture.OptimumDirectory(Reference with { LogitsWidth = 320 }, NewDir("qwen-small")));
        using var b = (TransformerModel)ModelDirectory.Load(ExportFixture.OptimumDirectory(Reference with { LogitsWidth = 384, Seed = 9 }, NewDir("qwen-large")));
        Assert.Equal(a.VocabSize, b.VocabSize);
        Assert.NotNull(a.VocabularyDigest);
        Assert.Equal(a.VocabularyDigest, b.VocabularyDigest);

        // A different tokenizer (two tokens swapped) is a different vocabulary, even with the same size.
        var other = ExportFixture.OptimumDirectory(Reference, NewDir("other-tokenizer"));
        var tokenizer = Path.Combine(other, "tokenizer.json");
        var json = File.ReadAllText(tokenizer);
        json = json.Replace("\"a\": 97", "\"a\": TMP", StringComparison.Ordinal).Replace("\"b\": 98", "\"b\": 97", StringComparison.Ordinal).Replace("\"a\": TMP", "\"a\": 98", StringComparison.Ordinal);
        File.WriteAllText(tokenizer, json);
        using var c = (TransformerModel)ModelDirectory.Load(other);
        Assert.Equal(a.VocabSize, c.VocabSize);
        Assert.NotEqual(a.VocabularyDigest, c.VocabularyDigest);
    }
}

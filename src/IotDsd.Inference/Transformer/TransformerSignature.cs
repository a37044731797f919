using System.Globalization;
using IotDsd.Inference.Models;
using IotDsd.Inference.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>Where a decoder's <c>present</c> outputs put the new keys and values, and how it learns positions.</summary>
public enum KvLayout
{
    /// <summary>
    /// <c>present = concat(past, new)</c> (Optimum, MultiHeadAttention): the past is bound with padded capacity, the new
    /// keys follow all past slots, <c>position_ids</c> carry the true positions.
    /// </summary>
    Concat,

    /// <summary>
    /// GroupQueryAttention: <c>attention_mask</c> is read as a sequence length (its sum), the new keys are written right
    /// after the valid past and positions are counted from it, so the padded capacity works without <c>position_ids</c>.
    /// </summary>
    Seqlens,

    /// <summary>
    /// No <c>position_ids</c> and no GroupQueryAttention: the graph counts positions from the past's shape, so the past
    /// is bound with exactly its length (no padded capacity, no batching across sequences).
    /// </summary>
    Exact,

    /// <summary>
    /// The slot signature (<see cref="SlotGraph"/>, what this project builds): an additive <c>attention_bias</c>, explicit
    /// <c>position_ids</c>, <c>logits_indices</c>, and <c>present</c> holding only the new keys/values. Sessions live in
    /// the model's KV pool (<see cref="KvPool"/>), which a pass reads in place; token trees run in one pass.
    /// </summary>
    Slots,
}

/// <summary>
/// Input and output names of a decoder as onnxruntime-genai's <c>genai_config.json</c> gives them
/// (<c>model.decoder.inputs</c>/<c>outputs</c>); <c>%d</c> stands for the layer.
/// </summary>
public sealed record DecoderNames
{
    public string InputIds { get; init; } = TransformerGraph.InputIds;
    public string AttentionMask { get; init; } = TransformerGraph.AttentionMask;
    public string PositionIds { get; init; } = TransformerGraph.PositionIds;
    public string PastKey { get; init; } = "past_key_values.%d.key";
    public string PastValue { get; init; } = "past_key_values.%d.value";

    /// <summary>Key and value stacked in one tensor per layer (<c>past_%d</c>), when the export uses that form.</summary>
    public string? Past { get; init; }
    public string Logits { get; init; } = TransformerGraph.Logits;
    public string PresentKey { get; init; } = "present.%d.key";
    public string PresentValue { get; init; } = "present.%d.value";
    public string? Present { get; init; }

    public static string Format(string pattern, int layer) => pattern.Replace("%d", layer.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
}

/// <summary>What a decoder's configuration file says its shapes are, checked against the ONNX graph at load.</summary>
public sealed record DecoderExpectations
{
    /// <summary>The file the figures come from (named in errors).</summary>
    public required string Source { get; init; }
    public int? VocabSize { get; init; }
    public int? Layers { get; init; }
    public int? KvHeads { get; init; }
    public int? HeadDim { get; init; }

    /// <summary>Names from <c>genai_config.json</c>; null for Optimum's defaults (and the other spellings the loader knows).</summary>
    public DecoderNames? Names { get; init; }
}

/// <summary>The inputs and outputs of a decoder graph, their element types, and its <see cref="KvLayout"/>.</summary>
internal sealed class TransformerSignature
{
    // Spellings of the per-layer cache tensors seen in exports: Optimum / genai, then ORT's older converters.
    private static readonly (string PastKey, string PastValue, string PresentKey, string PresentValue)[] KnownCacheNames =
    [
        ("past_key_values.%d.key", "past_key_values.%d.value", "present.%d.key", "present.%d.value"),
        ("past_key_values.%d.key", "past_key_values.%d.value", "present_key_values.%d.key", "present_key_values.%d.value"),
        ("past_key_%d", "past_value_%d", "present_key_%d", "present_value_%d"),
    ];

    public const string UseCacheBranchName = "use_cache_branch";

    public required string InputIds { get; init; }
    public required TensorElementType IdsType { get; init; }
    /// <summary>The 2-D mask; empty in the slot signature, which takes <see cref="AttentionBias"/> instead.</summary>
    public required string AttentionMask { get; init; }

    /// <summary><c>attention_bias</c> and <c>logits_indices</c> (<see cref="KvLayout.Slots"/>); null otherwise.</summary>
    public string? AttentionBias { get; init; }
    public string? LogitsIndices { get; init; }

    /// <summary>
    /// <c>kv_write_from</c> / <c>kv_write_to</c> (<see cref="SlotGraph"/>): the graph writes the new keys and values into
    /// the bound past itself and returns it as <c>present</c>; null for slot graphs built before them, whose
    /// <c>present</c> holds the new tokens only.
    /// </summary>
    public string? KvWriteFrom { get; init; }
    public string? KvWriteTo { get; init; }
    public required TensorElementType MaskType { get; init; }
    public string? PositionIds { get; init; }
    public TensorElementType PositionsType { get; init; } = TensorElementType.Int64;
    public string? UseCacheBranch { get; init; }

    /// <summary>Past key and value names, 2·layer and 2·layer+1 (the same name twice for a stacked cache).</summary>
    public required string[] Past { get; init; }
    public required string[] Present { get; init; }
    public required string Logits { get; init; }
    public required TensorElementType LogitsType { get; init; }
    public required TensorElementType KvType { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int LogitsWidth { get; init; }
    public required KvLayout Layout { get; init; }

    /// <summary>Key and value share one tensor per layer ([2, batch, heads, past, head_dim]); <see cref="Past"/> names it twice.</summary>
    public bool Stacked { get; init; }

    public int Layers => Past.Length / 2;

    public static TransformerSignature Inspect(string path, InferenceSession session, IReadOnlySet<string> operators, DecoderNames? given)
    {
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        string Fail(string what) => throw new ModelLoadException(path, $"'{path}' is not a decoder this runner can feed: {what}.");

        var names = given ?? new DecoderNames();
        // Key and value stacked in one tensor per layer ([2, batch, heads, past, head_dim]): ORT's GPT-2 converter,
        // genai's past_names/present_names.
        string? stacked = names.Past ?? (given is null && inputs.ContainsKey("past_0") ? "past_%d" : null);
        string stackedPresent = names.Present ?? "present_%d";
        if (stacked is not null && !inputs.ContainsKey(DecoderNames.Format(stacked, 0)))
            Fail($"it has no input '{DecoderNames.Format(stacked, 0)}'{(given is null ? "" : " as genai_config.json names it")}");

        var (pastKey, pastValue, presentKey, presentValue) = (names.PastKey, names.PastValue, names.PresentKey, names.PresentValue);
        if (stacked is not null) (pastKey, pastValue, presentKey, presentValue) = (stacked, stacked, stackedPresent, stackedPresent);
        else if (given is null && !inputs.ContainsKey(DecoderNames.Format(pastKey, 0)))
        {
            foreach (var spelling in KnownCacheNames)
            {
                if (inputs.ContainsKey(DecoderNames.Format(spelling.PastKey, 0)) && outputs.ContainsKey(DecoderNames.Format(spelling.PresentKey, 0)))
                {
                    (pastKey, pastValue, presentKey, presentValue) = spelling;
                    break;
                }
            }
        }

        TensorElementType Integer(string name, string role, bool required)
        {
            if (!inputs.TryGetValue(name, out var meta))
            {
                if (required) Fail($"it has no input '{name}' ({role}){(given is null ? "" : " as genai_config.json names it")}");
                return TensorElementType.Int64;
            }
            if (meta.ElementDataType is not (TensorElementType.Int64 or TensorElementType.Int32))
                Fail($"input '{name}' is {meta.ElementDataType}; {role} must be int64 or int32");
            return meta.ElementDataType;
        }

        var idsType = Integer(names.InputIds, "token ids", true);
        bool slots = inputs.ContainsKey(SlotGraph.AttentionBias) && inputs.ContainsKey(SlotGraph.LogitsIndices);
        if (slots && (idsType != TensorElementType.Int64 || !inputs.ContainsKey(names.PositionIds) || inputs[SlotGraph.AttentionBias].ElementDataType != TensorElementType.Float))
            Fail($"'{SlotGraph.AttentionBias}' needs int64 '{names.InputIds}', int64 '{names.PositionIds}' and a float bias");
        var maskType = slots ? TensorElementType.Int64 : Integer(names.AttentionMask, "the attention mask", true);
        string? positions = inputs.ContainsKey(names.PositionIds) ? names.PositionIds : null;
        var positionsType = positions is null ? TensorElementType.Int64 : Integer(positions, "positions", true);

        int layers = 0;
        while (inputs.ContainsKey(DecoderNames.Format(pastKey, layers))) layers++;
        if (layers == 0)
            Fail($"it has no '{DecoderNames.Format(pastKey, 0)}' input; export it with its KV cache (optimum-cli export onnx " +
                "--task text-generation-with-past)");
        var first = inputs[DecoderNames.Format(pastKey, 0)];
        int rank = stacked is null ? 4 : 5, skip = rank - 4; // a stacked cache leads with its [2] (key, value) axis
        if (first.Dimensions.Length != rank || first.Dimensions[1 + skip] <= 0 || first.Dimensions[3 + skip] <= 0 || (stacked is not null && first.Dimensions[0] is not (2 or -1)))
            Fail(stacked is null
                ? $"'{DecoderNames.Format(pastKey, 0)}' must be [batch, heads, past, head_dim] with fixed heads and head_dim"
                : $"'{DecoderNames.Format(pastKey, 0)}' must be [2, batch, heads, past, head_dim] with fixed heads and head_dim");
        var kvType = first.ElementDataType;
        if (kvType is not (TensorElementType.Float or TensorElementType.Float16 or TensorElementType.BFloat16))
            Fail($"'{DecoderNames.Format(pastKey, 0)}' is {kvType}; the KV cache must be float32, float16 or bfloat16 (a quantized " +
                "cache is not supported: export with a floating-point cache)");

        var known = new HashSet<string>(StringComparer.Ordinal) { names.InputIds, names.AttentionMask };
        bool writes = false;
        if (slots)
        {
            known.Add(SlotGraph.AttentionBias);
            known.Add(SlotGraph.LogitsIndices);
            if (stacked is not null || kvType != TensorElementType.Float) Fail($"'{SlotGraph.AttentionBias}' graphs take float32 per-layer key/value caches");
            bool from = inputs.TryGetValue(SlotGraph.KvWriteFrom, out var f), to = inputs.TryGetValue(SlotGraph.KvWriteTo, out var t);
            if (from != to) Fail($"it has one of '{SlotGraph.KvWriteFrom}' and '{SlotGraph.KvWriteTo}' without the other");
            if (from && (f!.ElementDataType != TensorElementType.Int64 || t!.ElementDataType != TensorElementType.Int64 || t.Dimensions.Length != 2 || t.Dimensions[1] != 3))
                Fail($"'{SlotGraph.KvWriteFrom}' must be int64 [writes] and '{SlotGraph.KvWriteTo}' int64 [writes, 3]");
            writes = from;
            known.Add(SlotGraph.KvWriteFrom);
            known.Add(SlotGraph.KvWriteTo);
        }
        if (positions is not null) known.Add(positions);
        var past = new string[2 * layers];
        var present = new string[2 * layers];
        for (int l = 0; l < layers; l++)
        {
            past[2 * l] = DecoderNames.Format(pastKey, l);
            past[2 * l + 1] = DecoderNames.Format(pastValue, l);
            present[2 * l] = DecoderNames.Format(presentKey, l);
            present[2 * l + 1] = DecoderNames.Format(presentValue, l);
            for (int i = 2 * l; i <= 2 * l + 1; i++)
            {
                if (!inputs.TryGetValue(past[i], out var m)) Fail($"input '{past[i]}' is missing");
                else if (m.ElementDataType != kvType) Fail($"'{past[i]}' is {m.ElementDataType} but '{past[0]}' is {kvType}");
                else if (m.Dimensions.Length != rank || m.Dimensions[1 + skip] != first.Dimensions[1 + skip] || m.Dimensions[3 + skip] != first.Dimensions[3 + skip])
                    Fail($"'{past[i]}' has a different shape from '{past[0]}'");
                if (!outputs.TryGetValue(present[i], out var o)) Fail($"output '{present[i]}' is missing (the past is '{past[i]}')");
                else if (o.ElementDataType != kvType) Fail($"output '{present[i]}' is {o.ElementDataType} but the past is {kvType}");
                known.Add(past[i]);
            }
        }

        string? useCache = null;
        if (inputs.TryGetValue(UseCacheBranchName, out var branch))
        {
            if (branch.ElementDataType != TensorElementType.Bool)
                Fail($"input '{UseCacheBranchName}' is {branch.ElementDataType}, not bool");
            useCache = UseCacheBranchName;
            known.Add(useCache);
        }

        var extra = inputs.Keys.Where(k => !known.Contains(k)).ToList();
        if (extra.Count > 0)
            Fail($"it has inputs this runner does not feed: {string.Join(", ", extra)} (it feeds {names.InputIds}, {names.AttentionMask}, " +
                $"{names.PositionIds}, {UseCacheBranchName} and the past key/value caches)");

        if (!outputs.TryGetValue(names.Logits, out var logits)) Fail($"it has no output '{names.Logits}'");
        else if (logits.ElementDataType is not (TensorElementType.Float or TensorElementType.Float16 or TensorElementType.BFloat16))
            Fail($"output '{names.Logits}' is {logits.ElementDataType}; it must be float32, float16 or bfloat16");
        else if (slots ? logits.Dimensions.Length != 2 || logits.Dimensions[1] <= 0 : logits.Dimensions.Length != 3 || logits.Dimensions[2] <= 0)
            Fail(slots ? $"'{names.Logits}' must be [rows, vocab] with a fixed vocab" : $"'{names.Logits}' must be [batch, sequence, vocab] with a fixed vocab");

        var layout = slots ? KvLayout.Slots
            : operators.Contains(OnnxOperators.MicrosoftDomain + ":GroupQueryAttention") ? KvLayout.Seqlens
            : positions is null ? KvLayout.Exact
            : KvLayout.Concat;
        return new TransformerSignature
        {
            InputIds = names.InputIds,
            IdsType = idsType,
            AttentionMask = slots ? "" : names.AttentionMask,
            MaskType = maskType,
            AttentionBias = slots ? SlotGraph.AttentionBias : null,
            LogitsIndices = slots ? SlotGraph.LogitsIndices : null,
            KvWriteFrom = writes ? SlotGraph.KvWriteFrom : null,
            KvWriteTo = writes ? SlotGraph.KvWriteTo : null,
            PositionIds = positions,
            PositionsType = positionsType,
            UseCacheBranch = useCache,
            Past = past,
            Present = present,
            Logits = names.Logits,
            LogitsType = outputs[names.Logits].ElementDataType,
            KvType = kvType,
            KvHeads = first.Dimensions[1 + skip],
            HeadDim = first.Dimensions[3 + skip],
            Stacked = stacked is not null,
            LogitsWidth = outputs[names.Logits].Dimensions[slots ? 1 : 2],
            Layout = layout,
        };
    }
}

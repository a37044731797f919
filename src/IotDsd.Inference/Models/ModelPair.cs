using IotDsd.Core.Models;
using IotDsd.Core.Sessions;
using IotDsd.Inference.Execution;
using IotDsd.Inference.Llama;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Models;

/// <summary>The draft and target models a command runs, loaded by path (or the shipped pair, built on first use).</summary>
public sealed class ModelPair : IDisposable
{
    private ModelPair(ILanguageModel? draft, ILanguageModel target, ITokenizer tokenizer, SpecialTokens specials)
    {
        Draft = draft;
        Target = target;
        Specials = specials;
        Tokenizer = new SpecialTokenFilter(tokenizer, specials.Special);
    }

    /// <summary>The shipped pairs by name: the default, and the byte n-gram pair.</summary>
    public static IReadOnlyList<string> PairNames { get; } = [StoriesPair, NgramPair];

    public const string StoriesPair = "stories";
    public const string NgramPair = "ngram";

    /// <summary>Names the shipped pair used when no model directory is given (default: <see cref="StoriesPair"/>).</summary>
    public const string PairEnvironmentVariable = "IOTDSD_PAIR";

    public ILanguageModel? Draft { get; }
    public ILanguageModel Target { get; }

    /// <summary>The tokenizer; its decoded text leaves out special tokens.</summary>
    public ITokenizer Tokenizer { get; }

    /// <summary>BOS, EOS and the special tokens, from the model directory's configuration files.</summary>
    public SpecialTokens Specials { get; }

    /// <summary>The prompt's ids, BOS in front where the model expects it; an empty prompt is BOS alone (or an error).</summary>
    public int[] EncodePrompt(string text)
    {
        var prompt = Specials.Prompt(Tokenizer.Encode(text));
        return prompt.Length > 0 ? prompt : throw new ModelPairException("--prompt must not be empty (this model has no BOS token to start from)");
    }

    /// <summary><paramref name="settings"/> with the model's end-of-sequence ids as stop tokens.</summary>
    public SessionSettings WithStops(SessionSettings settings) => settings with { StopTokens = Specials.Eos };

    /// <summary>The shipped pair's directories by name (null: <c>$IOTDSD_PAIR</c>, else <see cref="StoriesPair"/>), built on first use.</summary>
    public static (string DraftDir, string TargetDir) Shipped(string? pair, InferenceOptions? options = null)
    {
        pair ??= Environment.GetEnvironmentVariable(PairEnvironmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : StoriesPair;
        return pair switch
        {
            StoriesPair => StoriesModels.Ensure(options: options),
            NgramPair => DefaultModels.Ensure(),
            _ => throw new ModelPairException($"--pair (or ${PairEnvironmentVariable}) must be {string.Join(" or ", PairNames)}, got '{pair}'"),
        };
    }

    /// <summary>
    /// Loads the pair; directories left null fall back to the shipped n-gram pair. The execution provider comes from
    /// <paramref name="options"/>, else from <c>$IOTDSD_EXECUTION_PROVIDER</c> and <c>$IOTDSD_PROVIDER_LIBRARY</c> (CPU by default).
    /// </summary>
    public static ModelPair Load(string? draftDir, string? targetDir, bool needDraft, bool needTarget = true, InferenceOptions? options = null, string? pair = null) =>
        Load(draftDir, targetDir, needDraft, needTarget, options is null ? null : ModelProviders.Both(options), pair);

    /// <summary>
    /// Loads the pair with a provider per model (<see cref="ModelProviders"/>; null: <see cref="ModelProviders.Resolve"/>
    /// from the environment). A model whose graph its provider cannot run fails with a message naming the operator.
    /// </summary>
    public static ModelPair Load(string? draftDir, string? targetDir, bool needDraft, bool needTarget, ModelProviders? providers, string? pair = null)
    {
        try
        {
            return LoadCore(draftDir, targetDir, needDraft, needTarget, providers ?? ModelProviders.Resolve(), pair);
        }
        catch (ExecutionProviderException ex)
        {
            throw new ModelPairException(ex.Message);
        }
    }

    private static ModelPair LoadCore(string? draftDir, string? targetDir, bool needDraft, bool needTarget, ModelProviders providers, string? pair)
    {
        // A target the caller neither needs nor named is not loaded (a device runs its draft alone, on its own provider);
        // the shipped target's directory still gives the special tokens.
        var loadTarget = needTarget || targetDir is not null;
        if ((needDraft && draftDir is null) || (needTarget && targetDir is null))
        {
            var (defaultDraft, defaultTarget) = Shipped(pair, providers.Target);
            draftDir ??= defaultDraft;
            targetDir ??= defaultTarget;
        }

        ILanguageModel? draft = null;
        ILanguageModel? target = null;
        try
        {
            draft = needDraft ? ModelDirectory.Load(draftDir!, providers.Draft) : null;
            target = loadTarget ? ModelDirectory.Load(targetDir!, providers.Target) : null;
            if (draft is not null && target is not null && draft.VocabSize != target.VocabSize)
            {
                throw new ModelPairException($"draft ({draftDir}) has {draft.VocabSize} tokens and target ({targetDir}) {target.VocabSize}: the pair must share a vocabulary");
            }

            if (draft is not null && target is not null
                && VocabularyCheck.Compare(draft.VocabSize, VocabularyCheck.DigestOf(draft), target.VocabSize, VocabularyCheck.DigestOf(target)) is not null)
            {
                throw new ModelPairException($"draft ({draftDir}) has vocabulary {VocabularyCheck.DigestOf(draft)} and target ({targetDir}) {VocabularyCheck.DigestOf(target)}: " +
                    "different tokenizers; the pair must share a vocabulary (the same tokenizer.json)");
            }

            var tokenizer = TokenizerFactory.ForModelDirectory(needDraft ? draftDir! : targetDir!);
            var specials = SpecialTokens.Read(targetDir ?? draftDir!);
            return new ModelPair(draft, (target ?? draft)!, tokenizer, specials);
        }
        catch
        {
            draft?.Dispose();
            target?.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Draft?.Dispose();
        if (!ReferenceEquals(Draft, Target))
        {
            Target.Dispose();
        }
    }
}

/// <summary>A pair that cannot be used as asked (no such shipped pair, mismatched vocabularies, an empty prompt); the message says how to fix it.</summary>
public sealed class ModelPairException(string message) : Exception(message);

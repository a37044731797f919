using IotDsd.Core.Models;
using IotDsd.Inference.Execution;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Cli.Commands;

/// <summary>The draft and target models a command runs, loaded by path (or the shipped pair, built on first use).</summary>
internal sealed class ModelPair : IDisposable
{
    private ModelPair(ILanguageModel? draft, ILanguageModel target, ITokenizer tokenizer)
    {
        Draft = draft;
        Target = target;
        Tokenizer = tokenizer;
    }

    public ILanguageModel? Draft { get; }
    public ILanguageModel Target { get; }
    public ITokenizer Tokenizer { get; }

    /// <summary>
    /// Loads the pair; directories left null fall back to the shipped n-gram pair. The execution provider comes from
    /// <paramref name="options"/>, else from <c>$IOTDSD_EXECUTION_PROVIDER</c> and <c>$IOTDSD_PROVIDER_LIBRARY</c> (CPU by default).
    /// </summary>
    public static ModelPair Load(string? draftDir, string? targetDir, bool needDraft, bool needTarget = true, InferenceOptions? options = null)
    {
        try
        {
            return LoadCore(draftDir, targetDir, needDraft, needTarget, options ?? InferenceOptions.FromEnvironment());
        }
        catch (ExecutionProviderException ex)
        {
            throw new CliError(ex.Message);
        }
    }

    private static ModelPair LoadCore(string? draftDir, string? targetDir, bool needDraft, bool needTarget, InferenceOptions options)
    {
        if ((needDraft && draftDir is null) || (needTarget && targetDir is null))
        {
            var (defaultDraft, defaultTarget) = DefaultModels.Ensure();
            draftDir ??= defaultDraft;
            targetDir ??= defaultTarget;
        }

        ILanguageModel? draft = null;
        ILanguageModel? target = null;
        try
        {
            draft = needDraft ? ModelDirectory.Load(draftDir!, options) : null;
            target = needTarget || targetDir is not null ? ModelDirectory.Load(targetDir!, options) : null;
            if (draft is not null && target is not null && draft.VocabSize != target.VocabSize)
            {
                throw new CliError($"draft ({draftDir}) has {draft.VocabSize} tokens and target ({targetDir}) {target.VocabSize}: the pair must share a vocabulary");
            }

            if (draft is not null && target is not null
                && VocabularyCheck.Compare(draft.VocabSize, VocabularyCheck.DigestOf(draft), target.VocabSize, VocabularyCheck.DigestOf(target)) is not null)
            {
                throw new CliError($"draft ({draftDir}) has vocabulary {VocabularyCheck.DigestOf(draft)} and target ({targetDir}) {VocabularyCheck.DigestOf(target)}: " +
                    "different tokenizers; the pair must share a vocabulary (the same tokenizer.json)");
            }

            var tokenizer = TokenizerFactory.ForModelDirectory(needDraft ? draftDir! : targetDir!);
            return new ModelPair(draft, (target ?? draft)!, tokenizer);
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

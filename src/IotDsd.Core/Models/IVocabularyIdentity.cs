namespace IotDsd.Core.Models;

/// <summary>
/// A model that knows which tokenizer its ids belong to: a short digest of the vocabulary's content, so that a draft
/// and a target of the same size but different tokenizers are told apart when a session opens.
/// </summary>
public interface IVocabularyIdentity
{
    /// <summary>Digest of the vocabulary (the tokenizer's text of every id); null when unknown.</summary>
    string? VocabularyDigest { get; }
}

/// <summary>The check a pair must pass before drafting: one vocabulary, by size and, where both know it, by content.</summary>
public static class VocabularyCheck
{
    /// <summary>The digest of <paramref name="model"/>, or null when it does not know one.</summary>
    public static string? DigestOf(ILanguageModel model) => (model as IVocabularyIdentity)?.VocabularyDigest;

    /// <summary>Null when the two vocabularies pair up; otherwise the problem, naming both.</summary>
    public static string? Compare(int draftSize, string? draftDigest, int targetSize, string? targetDigest)
    {
        if (draftSize != targetSize)
            return $"draft vocabulary has {draftSize} tokens, the target {targetSize}: the models do not share a vocabulary";
        if (!string.IsNullOrEmpty(draftDigest) && !string.IsNullOrEmpty(targetDigest) && !string.Equals(draftDigest, targetDigest, StringComparison.Ordinal))
            return $"draft vocabulary {draftDigest} and target vocabulary {targetDigest} ({draftSize} tokens each) come from different " +
                "tokenizers: the models do not share a vocabulary (use a draft and a target with the same tokenizer.json)";
        return null;
    }
}

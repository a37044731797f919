using IotDsd.Core.Models;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// <see cref="TransformerModel.FeedBatch"/> and <see cref="TransformerModel.FeedTreeBatch"/> for a slot-signature
/// model: every request (chain or tree) of at most <see cref="TransformerSequence.PrefillChunk"/> tokens goes into one
/// <see cref="SlotEngine"/> pass; a longer one (a prompt) is fed on its own, in chunks, before it.
/// </summary>
internal static class SlotBatch
{
    public static void Run(TransformerModel model, SlotEngine engine, IReadOnlyList<FeedRequest> batch)
    {
        var items = new SlotItem[batch.Count];
        var rows = new int[batch.Count];
        for (int k = 0; k < batch.Count; k++)
        {
            var r = batch[k];
            if (r.Sequence is not SlotSequence seq || !ReferenceEquals(seq.Model, model))
                throw new ArgumentException($"The sequence was not created by model '{model.Name}'.", nameof(batch));
            rows[k] = model.ValidateFeed(seq.Length, r.Tokens.Span, r.Logits.Length);
            if (r.IsTree && TokenTree.Validate(r.Parents.Span, r.Tokens.Length) is { } bad) throw new ArgumentException(bad, nameof(batch));
            for (int j = 0; j < k; j++)
            {
                if (ReferenceEquals(batch[j].Sequence, seq) && r.Tokens.Length > 0 && batch[j].Tokens.Length > 0)
                    throw new ArgumentException("A sequence appears twice in one batch.", nameof(batch));
            }
        }

        for (int k = 0; k < batch.Count; k++)
        {
            var r = batch[k];
            var seq = (SlotSequence)r.Sequence;
            if (r.Tokens.Length <= TransformerSequence.PrefillChunk)
            {
                items[k] = new SlotItem(seq, r.Tokens, r.Parents, rows[k]);
                continue;
            }
            if (r.IsTree) seq.FeedTree(r.Tokens.Span, r.Parents.Span, r.Logits.Span, rows[k]);
            else seq.Feed(r.Tokens.Span, r.Logits.Span);
            items[k] = new SlotItem(seq, ReadOnlyMemory<int>.Empty, ReadOnlyMemory<int>.Empty, 0);
        }

        lock (engine.Gate)
        {
            foreach (var item in items)
            {
                if (item.Tokens.Length > 0) item.Sequence.EnsureSlot();
            }
            engine.Run(items);
            for (int k = 0; k < items.Length; k++)
            {
                if (items[k].Tokens.Length > 0) engine.CopyLogits(k, items[k].Rows, batch[k].Logits.Span);
            }
        }
    }
}

using IotDsd.Core.Models;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// One forward pass over several sequences of different lengths. Row <c>b</c> of the batch holds its sequence's
/// past in slots <c>[0, length_b)</c> of a past padded to the longest, then its new tokens at the start of the
/// chunk; the attention mask hides the padding and <c>position_ids</c> carry each row's own positions, so every row
/// sees exactly what it would see alone. New keys and values are copied back into each sequence's cache.
/// </summary>
internal sealed class TransformerBatch(TransformerModel model) : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ForwardBuffers _buffers = new(model);

    public void Run(IReadOnlyList<FeedRequest> batch)
    {
        lock (_lock)
        {
            var live = new List<int>(batch.Count);
            int s = 0, p = 1;
            for (int i = 0; i < batch.Count; i++)
            {
                if (batch[i].Tokens.Length == 0) continue;
                live.Add(i);
                s = Math.Max(s, batch[i].Tokens.Length);
                p = Math.Max(p, batch[i].Sequence.Length);
            }

            int rows = live.Count, t = p + s, d = model.HeadDim * model.KvElementSize, heads = model.KvHeads;
            bool seqlens = model.Layout == KvLayout.Seqlens, stacked = model.Signature.Stacked;
            long pastHalf = (long)rows * model.SlotBytes * p, presentHalf = (long)rows * model.SlotBytes * t;
            _buffers.EnsurePast(rows, p);
            _buffers.EnsureChunk(rows, p, s);
            var ids = _buffers.Ids!.Span;
            var positions = _buffers.Positions!.Span;
            var mask = _buffers.Mask!.Span;
            for (int r = 0; r < rows; r++)
            {
                var request = batch[live[r]];
                var seq = (TransformerSequence)request.Sequence;
                var tokens = request.Tokens.Span;
                int length = seq.Length;
                seq.EnsureCapacity(length + tokens.Length); // also gives a fresh sequence its buffers
                for (int i = 0; i < s; i++)
                {
                    ids[r * s + i] = i < tokens.Length ? tokens[i] : 0;
                    positions[r * s + i] = length + Math.Min(i, tokens.Length - 1);
                }
                var row = mask.Slice(r * t, t);
                row[..length].Fill(1);
                row[length..p].Clear();
                // Seqlens graphs read the mask as a length: the whole chunk counts, the padding after a short chunk is
                // written past its real tokens and never copied back (and causality keeps real queries off it).
                int open = seqlens ? s : tokens.Length;
                row.Slice(p, open).Fill(1);
                row[(p + open)..].Clear();
                for (int i = 0; i < _buffers.Past.Length; i++)
                {
                    for (int h = 0; h < heads; h++)
                        seq.Past(i, (long)h * seq.Capacity * d, length * d)
                            .CopyTo(ForwardBuffers.Slice(_buffers.Past, i, pastHalf, stacked, ((long)r * heads + h) * p * d, length * d));
                }
            }

            _buffers.Narrow(rows * s, rows * t);
            using (var binding = _buffers.Bind(rows, p, s)) model.Session.RunWithBinding(model.RunOptions, binding.Io);

            for (int r = 0; r < rows; r++)
            {
                var request = batch[live[r]];
                var seq = (TransformerSequence)request.Sequence;
                int n = request.Tokens.Length, length = seq.Length, from = seqlens ? length : p;
                for (int i = 0; i < _buffers.Present.Length; i++)
                {
                    for (int h = 0; h < heads; h++)
                        ForwardBuffers.Slice(_buffers.Present, i, presentHalf, stacked, (((long)r * heads + h) * t + from) * d, n * d)
                            .CopyTo(seq.Past(i, ((long)h * seq.Capacity + length) * d, n * d));
                }
                int wanted = request.Logits.Length / model.VocabSize;
                model.CopyLogits(_buffers.Logits!, (long)r * s + n - wanted, wanted, request.Logits.Span);
                seq.Advance(n);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock) _buffers.Dispose();
    }
}

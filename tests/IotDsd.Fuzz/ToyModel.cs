using IotDsd.Core.Models;

namespace IotDsd.Fuzz;

/// <summary>A deterministic 16-token model, so fuzzed rounds reach verification without model files.</summary>
public sealed class ToyModel : ILanguageModel
{
    public string Name => "toy-16";

    public int VocabSize => 16;

    public IModelSequence CreateSequence() => new Sequence();

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        foreach (var r in batch)
        {
            r.Sequence.Feed(r.Tokens.Span, r.Logits.Span);
        }
    }

    public void Dispose()
    {
    }

    private sealed class Sequence : IModelSequence
    {
        private readonly List<int> _tokens = [];

        public int Length => _tokens.Count;

        public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
        {
            foreach (var t in tokens)
            {
                _tokens.Add(t);
            }

            var rows = logits.Length / 16;
            for (var r = 0; r < rows; r++)
            {
                var last = _tokens[_tokens.Count - rows + r];
                for (var v = 0; v < 16; v++)
                {
                    logits[(r * 16) + v] = ((last * 7) + (v * 3)) % 11 * 0.5f;
                }
            }
        }

        public void Truncate(int length) => _tokens.RemoveRange(length, _tokens.Count - length);

        public void Dispose()
        {
        }
    }
}

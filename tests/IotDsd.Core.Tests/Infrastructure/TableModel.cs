using IotDsd.Core.Models;

namespace IotDsd.Core.Tests.Infrastructure;

/// <summary>
/// A tiny deterministic language model: the logits of the next token are a table lookup on the last two tokens
/// (the first token of a sequence sees a beginning-of-sequence context). Thread-safe: sequences share only the table.
/// </summary>
internal sealed class TableModel : ILanguageModel
{
    private readonly float[] _table;

    public TableModel(string name, int vocab, float[] table)
    {
        if (table.Length != (vocab + 1) * vocab * vocab)
        {
            throw new ArgumentException("table must hold (V+1)·V·V logits", nameof(table));
        }

        Name = name;
        VocabSize = vocab;
        _table = table;
    }

    public string Name { get; }

    public int VocabSize { get; }

    /// <summary>The context index used for "no token before this one".</summary>
    public int Bos => VocabSize;

    /// <summary>Logits that follow <paramref name="prev1"/> when <paramref name="prev2"/> came before it (<see cref="Bos"/> for none).</summary>
    public ReadOnlySpan<float> Row(int prev2, int prev1) => _table.AsSpan(((prev2 * VocabSize) + prev1) * VocabSize, VocabSize);

    /// <summary>Logits after a whole token history.</summary>
    public ReadOnlySpan<float> RowAfter(IReadOnlyList<int> history) =>
        Row(history.Count >= 2 ? history[^2] : Bos, history[^1]);

    /// <summary>A target and a draft that agrees with it only partly: draft = target + noise.</summary>
    public static (TableModel Target, TableModel Draft) CreatePair(int vocab, int seed, double targetScale, double draftNoise)
    {
        var random = new Random(seed);
        var n = (vocab + 1) * vocab * vocab;
        var target = new float[n];
        var draft = new float[n];
        for (var i = 0; i < n; i++)
        {
            target[i] = (float)(Gaussian(random) * targetScale);
            draft[i] = target[i] + (float)(Gaussian(random) * draftNoise);
        }

        return (new TableModel("table-target", vocab, target), new TableModel("table-draft", vocab, draft));
    }

    private static double Gaussian(Random random)
    {
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    public IModelSequence CreateSequence() => new Sequence(this);

    public void FeedBatch(IReadOnlyList<FeedRequest> batch)
    {
        foreach (var request in batch)
        {
            request.Sequence.Feed(request.Tokens.Span, request.Logits.Span);
        }
    }

    public void Dispose()
    {
    }

    private sealed class Sequence(TableModel model) : IModelSequence
    {
        private readonly List<int> _tokens = [];

        public int Length => _tokens.Count;

        public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
        {
            var v = model.VocabSize;
            if (logits.Length % v != 0 || logits.Length / v > tokens.Length)
            {
                throw new ArgumentException($"logits of {logits.Length} do not fit {tokens.Length} tokens of vocabulary {v}");
            }

            foreach (var t in tokens)
            {
                if ((uint)t >= (uint)v)
                {
                    throw new ArgumentOutOfRangeException(nameof(tokens), t, "token outside the vocabulary");
                }

                _tokens.Add(t);
            }

            var rows = logits.Length / v;
            for (var r = 0; r < rows; r++)
            {
                var index = _tokens.Count - rows + r;
                var prev2 = index >= 1 ? _tokens[index - 1] : model.Bos;
                model.Row(prev2, _tokens[index]).CopyTo(logits.Slice(r * v, v));
            }
        }

        public void Truncate(int length)
        {
            if (length < 0 || length > _tokens.Count)
            {
                throw new ArgumentOutOfRangeException(nameof(length), length, $"sequence holds {_tokens.Count} tokens");
            }

            _tokens.RemoveRange(length, _tokens.Count - length);
        }

        public void Dispose()
        {
        }
    }
}

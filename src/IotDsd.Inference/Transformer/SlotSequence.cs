using IotDsd.Core.Models;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// One generation of a slot-signature model (<see cref="KvLayout.Slots"/>): a slot in the model's <see cref="KvPool"/>
/// (taken at the first feed, given back on dispose) and its length. Feeds, trees and batches all run through the
/// model's <see cref="SlotEngine"/>; a tree is one pass (a tree attention bias) and <see cref="KeepPath"/> moves the
/// kept nodes' keys/values together inside the slot instead of feeding them again.
/// </summary>
internal sealed class SlotSequence(TransformerModel model, SlotEngine engine) : IModelSequence
{
    private readonly SlotItem[] _one = new SlotItem[1];
    private int[] _tokens = new int[16];
    private int[] _parents = [];
    private bool _disposed;

    public TransformerModel Model { get; } = model;

    public int Length { get; private set; }

    /// <summary>The pool slot, or −1 before the first feed.</summary>
    public int Slot { get; private set; } = -1;

    public void Feed(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        int rows = Model.ValidateFeed(Length, tokens, logits.Length);
        ThrowIfDisposed();
        if (tokens.Length == 0) return;
        lock (engine.Gate)
        {
            EnsureSlot();
            // A long prompt runs in passes of at most PrefillChunk tokens; only the last asks for logits.
            while (tokens.Length > TransformerSequence.PrefillChunk && tokens.Length - TransformerSequence.PrefillChunk >= rows)
            {
                RunOne(tokens[..TransformerSequence.PrefillChunk], [], 0);
                tokens = tokens[TransformerSequence.PrefillChunk..];
            }
            RunOne(tokens, [], rows);
            engine.CopyLogits(0, rows, logits);
        }
    }

    public void FeedTree(ReadOnlySpan<int> tokens, ReadOnlySpan<int> parents, Span<float> logits, int rows)
    {
        if (TokenTree.Validate(parents, tokens.Length) is { } bad) throw new ArgumentException(bad, nameof(parents));
        if (rows < 0 || rows * Model.VocabSize != logits.Length) throw new ArgumentException($"{logits.Length} logits do not hold {rows} rows of {Model.VocabSize}.", nameof(logits));
        Model.ValidateFeed(Length, tokens, logits.Length);
        ThrowIfDisposed();
        if (tokens.Length == 0) return;
        if (tokens.Length > TransformerSequence.PrefillChunk)
        {
            TokenTree.FeedByPaths(this, tokens, parents, logits, rows);
            return;
        }
        lock (engine.Gate)
        {
            EnsureSlot();
            RunOne(tokens, parents, rows);
            engine.CopyLogits(0, rows, logits);
        }
    }

    public void KeepPath(int treeStart, ReadOnlySpan<int> treeTokens, ReadOnlySpan<int> nodes)
    {
        ThrowIfDisposed();
        bool inPlace = Slot >= 0 && Length == treeStart + treeTokens.Length && nodes.Length <= treeTokens.Length;
        for (int i = 0; inPlace && i < nodes.Length; i++) inPlace = nodes[i] >= i && nodes[i] < treeTokens.Length && (i == 0 || nodes[i] > nodes[i - 1]);
        if (!inPlace)
        {
            TokenTree.KeepByRefeeding(this, treeStart, treeTokens, nodes);
            return;
        }
        lock (engine.Gate)
        {
            engine.Pool.Move(Slot, treeStart, nodes);
            Length = treeStart + nodes.Length;
        }
    }

    public void Truncate(int length)
    {
        ThrowIfDisposed();
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), length, $"Length must be 0..{Length}.");
        Length = length;
    }

    /// <summary>Takes a pool slot if this sequence has none (caller holds the engine's gate).</summary>
    internal void EnsureSlot()
    {
        ThrowIfDisposed();
        Model.ThrowIfDisposed();
        if (Slot < 0) Slot = engine.Pool.Acquire(this);
    }

    /// <summary>Counts <paramref name="count"/> positions written by a pass as part of the sequence.</summary>
    internal void Advance(int count) => Length += count;

    private void RunOne(ReadOnlySpan<int> tokens, ReadOnlySpan<int> parents, int rows)
    {
        if (_tokens.Length < tokens.Length) _tokens = new int[Math.Max(tokens.Length, 2 * _tokens.Length)];
        tokens.CopyTo(_tokens);
        ReadOnlyMemory<int> p = default;
        if (!parents.IsEmpty)
        {
            if (_parents.Length < parents.Length) _parents = new int[Math.Max(parents.Length, 16)];
            parents.CopyTo(_parents);
            p = _parents.AsMemory(0, parents.Length);
        }
        _one[0] = new SlotItem(this, _tokens.AsMemory(0, tokens.Length), p, rows);
        engine.Run(_one);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (engine.Gate)
        {
            if (Slot >= 0) engine.Pool.Release(Slot);
            Slot = -1;
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}

using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>Token-tree rounds (docs/protocol.md §14): drafting a budgeted tree and committing the accepted path.</summary>
public sealed partial class DraftSession
{
    /// <summary>
    /// True when this session's rounds may be trees: a mode that offers them and a positive node budget. dsd at
    /// temperature 0 does not (every row is one-hot: a node could have one child only).
    /// </summary>
    public bool OffersTrees => TreeVerifier.OffersTrees(Settings.Mode) && Settings.MaxTreeNodes > 0
        && (Settings.Mode == DecodingMode.Greedy || !Settings.Sampling.IsGreedy);

    /// <summary>
    /// Drafts a round of <paramref name="shape"/>: a token tree when the shape branches and the session offers trees,
    /// otherwise a chain of <see cref="RoundShape.Depth"/> (dssd and rsr never send trees). The tree is no deeper than
    /// <see cref="SessionSettings.Gamma"/> or the tokens left, and holds at most <see cref="SessionSettings.MaxTreeNodes"/> nodes.
    /// </summary>
    public DraftRound PrepareRound(RoundShape shape, int proposals)
    {
        if (!shape.IsTree || !OffersTrees)
        {
            return PrepareRound(shape.Depth, proposals);
        }

        var depth = Math.Clamp(shape.Depth, 0, Math.Min(Settings.Gamma, Settings.MaxTokens - Generated - 1));
        var nodes = Math.Min(shape.Nodes, Settings.MaxTreeNodes);
        if (depth < 1 || nodes <= depth || IsComplete)
        {
            return PrepareRound(depth, proposals); // no room to branch: a chain (which also refuses a complete generation)
        }

        BeginRound();
        _stream = null;
        var n = _committed.Count;
        var committed = CollectionsMarshal.AsSpan(_committed);
        CatchUp(committed);
        var random = new RoundRandom(Settings.Seed, _sessionKey, Round);
        var tree = TreeDrafter.Draft(_sequence, n, _logits, depth, Math.Min(shape.Width, MaxTreeWidth), nodes, Settings.Sampling, random);
        var request = Header(committed) with
        {
            Draft = tree.Tokens,
            TreeParents = tree.Parents,
            DraftDistributions = tree.WireRows is { } rows ? MemoryMarshal.AsBytes(rows.AsSpan()).ToArray() : null,
        };
        _outstanding = new Outstanding(request, tree.Tokens, [], n, 0, ProposalsExamined, FollowUps) { Tree = tree, RankRows = tree.RankRows };
        return request;
    }

    /// <summary>Most children per tree node the device drafts.</summary>
    public const int MaxTreeWidth = 64;

    /// <summary>The accepted path of a tree verdict, checked against the tree sent; throws when it is not a root path of <paramref name="k"/> nodes.</summary>
    private static int[] AcceptedPath(TreeDraft tree, Verdict verdict, int k)
    {
        var path = verdict.AcceptedNodes ?? [];
        if (path.Length != k)
        {
            throw new ProtocolViolationException($"tree verdict accepts {k} drafts but names {path.Length} nodes");
        }

        var parent = -1;
        foreach (var node in path)
        {
            if ((uint)node >= (uint)tree.Tokens.Length || tree.Parents[node] != parent)
            {
                throw new ProtocolViolationException($"tree verdict's accepted nodes [{string.Join(",", path)}] are not a path from the root of the tree sent");
            }

            parent = node;
        }

        return path;
    }

    /// <summary>The ranks a committed round reports (see <see cref="RoundStep.Ranks"/>).</summary>
    private int[] RanksOf(Outstanding o, int[]? path, int k)
    {
        if (o.RankRows is not { } rows)
        {
            return [];
        }

        path ??= Enumerable.Range(0, k).ToArray();
        var committed = CollectionsMarshal.AsSpan(_committed)[o.CommittedAt..];
        return TreeDraft.RanksOf(rows, path, committed);
    }

    private static int[] TokensOf(TreeDraft tree, int[] path)
    {
        var tokens = new int[path.Length];
        for (var i = 0; i < path.Length; i++) tokens[i] = tree.Tokens[path[i]];
        return tokens;
    }
}

using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Core.Sessions;

/// <summary>Token-tree rounds (docs/protocol.md §14): checking a tree, feeding it in one pass, deciding its path.</summary>
public sealed partial class VerifierSession
{
    /// <summary>What a tree round must satisfy besides the ordinary checks; null when it does.</summary>
    private RoundCheck? CheckTree(DraftRound round)
    {
        var parents = round.TreeParents!;
        var nodes = round.Draft.Length;
        if (!TreeVerifier.OffersTrees(Open.Mode))
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"mode {Open.Mode.Name()} does not offer token trees (only greedy and dsd do); send a chain");
        }

        if (Open.MaxTreeNodes <= 0)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, "the session was opened for chains only (max tree nodes 0); send a chain");
        }

        if (nodes == 0 || nodes > Open.MaxTreeNodes)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"tree round carries {nodes} nodes, the session allows 1 to {Open.MaxTreeNodes}");
        }

        if (TokenTree.Validate(parents, nodes) is { } bad)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"malformed token tree: {bad}");
        }

        var depth = TokenTree.Depths(parents).Max();
        if (depth > Open.MaxGamma)
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"tree is {depth} deep, the session allows {Open.MaxGamma}");
        }

        if (!InVocab(round.Draft))
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"token outside the vocabulary of {_vocab}");
        }

        if (Open.Mode != DecodingMode.Dsd)
        {
            return null;
        }

        var expanded = TreeVerifier.Expanded(parents);
        if (round.DraftDistributions is not { } bytes || bytes.Length != expanded.Length * _vocab * sizeof(float)
            || !AllProbabilities(MemoryMarshal.Cast<byte, float>(bytes), positive: false))
        {
            return RoundCheck.Fail(ErrorCode.InvalidRequest, $"dsd tree needs {expanded.Length} draft rows of {_vocab} probabilities (the root's, then each node with children in order)");
        }

        var rows = MemoryMarshal.Cast<byte, float>(bytes);
        var siblings = new HashSet<(int Parent, int Token)>();
        for (var i = 0; i < nodes; i++)
        {
            if (!siblings.Add((parents[i], round.Draft[i])))
            {
                return RoundCheck.Fail(ErrorCode.InvalidRequest, $"dsd tree node {i} repeats a sibling's token {round.Draft[i]}; siblings are drawn without replacement");
            }

            var row = Array.IndexOf(expanded, parents[i]);
            if (!(rows[(row * _vocab) + round.Draft[i]] > 0f))
            {
                return RoundCheck.Fail(ErrorCode.InvalidRequest, $"dsd tree node {i} has draft probability 0 in its parent's row");
            }
        }

        return null;
    }

    /// <summary>The pending chain then the tree in one tree feed; rows for the last pending token and every node.</summary>
    private FeedRequest BeginTreeFeed(DraftRound round, int[] treeParents)
    {
        var pending = round.Pending.Length;
        var nodes = round.Draft.Length;
        var tokens = new int[pending + nodes];
        var parents = new int[pending + nodes];
        round.Pending.CopyTo(tokens, 0);
        round.Draft.CopyTo(tokens, pending);
        for (var i = 0; i < pending; i++)
        {
            parents[i] = i - 1;
        }

        for (var i = 0; i < nodes; i++)
        {
            parents[pending + i] = treeParents[i] < 0 ? pending - 1 : pending + treeParents[i];
        }

        return new FeedRequest(_sequence, tokens, new float[(nodes + 1) * _vocab]) { Parents = parents };
    }

    /// <summary>Decides a fed tree round, keeps the accepted path in the cache and remembers the verdict.</summary>
    private Verdict CompleteTree(DraftRound round, ReadOnlySpan<float> logits, int batchSize, int queueDepth, int verifyMicros, bool siblingResidual)
    {
        var nodes = round.Draft.Length;
        var rows = new float[(nodes + 1) * _vocab];
        for (var i = 0; i <= nodes; i++)
        {
            Distribution.FromLogits(logits.Slice(i * _vocab, _vocab), Sampling, rows.AsSpan(i * _vocab, _vocab));
        }

        var random = new RoundRandom(Open.Seed, _sessionKey, round.Round);
        var draftRows = round.DraftDistributions is { } bytes ? MemoryMarshal.Cast<byte, float>(bytes) : default;
        var outcome = TreeVerifier.Verify(Open.Mode, rows, _vocab, round.Draft, round.TreeParents!, draftRows, random, round.CommittedLength, siblingResidual);
        var accepted = new int[outcome.Path.Length];
        for (var i = 0; i < accepted.Length; i++)
        {
            accepted[i] = round.Draft[outcome.Path[i]];
        }

        // The pending tokens were fed as a chain before the tree: keeping the path after them is keeping a path of the
        // tree of drafts on a cache of the committed length.
        _sequence.KeepPath(round.CommittedLength, round.Draft, outcome.Path);
        _lastRejectedRow = null;
        return Remember(round, accepted, outcome.Token, new Verdict
        {
            SessionId = Open.SessionId,
            Epoch = Epoch,
            Round = round.Round,
            Attempt = 0,
            Accepted = accepted.Length,
            Kind = VerdictKind.Token,
            Token = outcome.Token,
            AcceptedNodes = outcome.Path,
            BatchSize = batchSize,
            QueueDepth = queueDepth,
            VerifyMicros = verifyMicros,
        });
    }
}

using System.Runtime.InteropServices;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Core.Tests.Infrastructure;
using Xunit.Abstractions;

namespace IotDsd.Core.Tests;

/// <summary>Token-tree rounds: greedy identity, dsd distribution, hostile trees, duplicates, verdict checks, resume.</summary>
public sealed class TreeRoundTests(ITestOutputHelper output)
{
    private static readonly RoundShape[] Shapes =
    [
        new(2, 2, 3, 0), new(3, 2, 6, 0), new(4, 3, 10, 0), new(2, 4, 8, 0), new(5, 2, 12, 0), new(3, 6, 16, 0), new(1, 3, 3, 0),
    ];

    private static SessionSettings Settings(string id, DecodingMode mode, SamplingParams sampling, int maxTokens, int gamma, int maxTreeNodes, ulong seed = 5) => new()
    {
        SessionId = id,
        Mode = mode,
        Sampling = sampling,
        Seed = seed,
        MaxTokens = maxTokens,
        Gamma = gamma,
        MaxTreeNodes = maxTreeNodes,
    };

    [Fact]
    public void Greedy_TreesOfManyShapes_GiveTargetGreedyTextByteForByte()
    {
        // A larger vocabulary than the distributional tests, so trees really branch and the draft often misses.
        var (target, draft) = TableModel.CreatePair(vocab: 12, seed: 8, targetScale: 1.5, draftNoise: 1.0);
        var stats = new DriveStats();
        var mismatches = 0;
        var runs = 0;
        long nodes = 0;
        for (var a = 0; a < 12; a++)
        {
            for (var b = 0; b < 12; b += 2)
            {
                int[] prompt = [a, b];
                var expected = Reference.Greedy(target, prompt, 24);
                foreach (var shape in Shapes)
                {
                    var settings = Settings($"g-{a}-{b}-{shape}", DecodingMode.Greedy, SamplingParams.Greedy, 24, gamma: 6, maxTreeNodes: 16);
                    var tokens = SessionDriver.RunShaped(draft, target, settings, prompt, shape, stats: stats);
                    runs++;
                    if (!tokens.SequenceEqual(expected))
                    {
                        mismatches++;
                    }
                }
            }
        }

        nodes = stats.Drafted;
        output.WriteLine($"greedy trees: {runs} runs over {Shapes.Length} shapes, {mismatches} mismatches; {stats}");
        Assert.Equal(0, mismatches);
        Assert.True(nodes > stats.Rounds * 3, $"trees should carry more than 3 nodes a round on average: {stats}");
    }

    [Fact]
    public void Greedy_TreeAcceptsMoreThanChainOfSameDepth()
    {
        var (target, draft) = TableModel.CreatePair(vocab: 12, seed: 8, targetScale: 1.5, draftNoise: 1.0);
        var chain = new DriveStats();
        var tree = new DriveStats();
        for (var a = 0; a < 12; a++)
        {
            int[] prompt = [a, (a * 5) % 12];
            SessionDriver.RunShaped(draft, target, Settings($"c{a}", DecodingMode.Greedy, SamplingParams.Greedy, 40, 4, 16), prompt, RoundShape.Chain(4), stats: chain);
            SessionDriver.RunShaped(draft, target, Settings($"t{a}", DecodingMode.Greedy, SamplingParams.Greedy, 40, 4, 16), prompt, new RoundShape(4, 3, 12, 0), stats: tree);
        }

        output.WriteLine($"chain 4: {chain}; tree d4 w3 n12: {tree}");
        Assert.True(tree.Rounds < chain.Rounds, $"a tree should need fewer rounds than a chain of the same depth: {tree.Rounds} vs {chain.Rounds}");
    }

    [Fact]
    public void Greedy_TreeHoldsTheDraftsChainOfItsDepth()
    {
        var (target, draft) = TableModel.CreatePair(vocab: 12, seed: 8, targetScale: 1.5, draftNoise: 1.0);
        var settings = Settings("spine", DecodingMode.Greedy, SamplingParams.Greedy, 40, 4, 8);
        using var device = new DraftSession(draft, settings, [3, 7]);
        using var verifier = new VerifierSession(target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var shape = new RoundShape(4, 4, 8, 0); // wide and shallow budget: best first alone would not reach depth 4
        var checkedRounds = 0;
        while (!device.IsComplete)
        {
            var round = device.PrepareRound(shape, 0);
            if (round.TreeParents is { } parents && round.Draft.Length > 4)
            {
                using var chainDevice = new DraftSession(draft, settings with { MaxTreeNodes = 0 }, device.Committed.ToArray());
                var chain = chainDevice.PrepareRound(4, 0).Draft;
                var leaf = Enumerable.Range(0, round.Draft.Length).FirstOrDefault(
                    i => TokenTree.PathTo(parents, i).Select(n => round.Draft[n]).SequenceEqual(chain), -1);
                Assert.True(leaf >= 0, $"round {round.Round}: the tree [{string.Join(",", round.Draft)}] lacks the chain [{string.Join(",", chain)}]");
                checkedRounds++;
            }

            SessionDriver.VerifyAndApply(device, verifier, target, round, 0);
        }

        Assert.True(checkedRounds > 3, $"only {checkedRounds} tree rounds checked");
    }

    [Fact]
    public void Greedy_TreeRound_ReportsRanksOfCommittedTokens()
    {
        var (target, draft) = TableModel.CreatePair(vocab: 12, seed: 8, targetScale: 1.5, draftNoise: 1.0);
        var settings = Settings("ranks", DecodingMode.Greedy, SamplingParams.Greedy, 30, 4, 12);
        using var device = new DraftSession(draft, settings, [1, 2]);
        using var verifier = new VerifierSession(target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var shape = new RoundShape(3, 3, 9, 0);
        var seenDeeperRank = false;
        var trees = 0;
        while (!device.IsComplete)
        {
            var round = device.PrepareRound(shape, 0); // a chain near the end, where no room is left to branch
            trees += round.TreeParents is null ? 0 : 1;
            var step = SessionDriver.VerifyAndApply(device, verifier, target, round, 0);
            var accepted = step.Count - 1;
            Assert.Equal(accepted + 1, step.Ranks.Length);
            for (var d = 0; d < accepted; d++)
            {
                Assert.InRange(step.Ranks[d], 0, shape.Width - 1); // an accepted node was one of its parent's top children
                seenDeeperRank |= step.Ranks[d] > 0;
            }

            // After the path: −1 at a leaf, else its rank among the deepest accepted node's logits.
            Assert.InRange(step.Ranks[accepted], -1, 11);
        }

        Assert.True(trees > 3, $"only {trees} tree rounds");
        Assert.True(seenDeeperRank, "some accepted node should be a second or third choice of the draft");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Dsd_Trees_MatchTargetJointOverFirstTwoPositions(bool shaped)
    {
        var (result, stats) = DsdTrees(siblingResidual: true, shaped ? Lossless.Shaped : Lossless.Plain);
        output.WriteLine($"dsd trees (shaped {shaped}): {result}; {stats}");
        Assert.Equal(0, result.Impossible);
        Assert.True(stats.Drafted > stats.Rounds * 4, $"trees should branch: {stats}");
        Assert.True(result.PValue >= Lossless.Alpha, $"chi-square rejects dsd trees: {result}");
    }

    [Fact]
    public void Greedy_ChainRound_RanksAcceptedZeroAndCorrectionAboveZero()
    {
        var (target, draft) = TableModel.CreatePair(vocab: 12, seed: 8, targetScale: 1.5, draftNoise: 1.0);
        var settings = Settings("chain-ranks", DecodingMode.Greedy, SamplingParams.Greedy, 40, 4, 0);
        using var device = new DraftSession(draft, settings, [1, 2]);
        using var verifier = new VerifierSession(target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var corrections = 0;
        while (!device.IsComplete)
        {
            var round = device.PrepareRound(4, 0);
            var step = SessionDriver.VerifyAndApply(device, verifier, target, round, 0);
            var accepted = step.Count - 1;
            Assert.Equal(accepted + 1, step.Ranks.Length);
            Assert.All(step.Ranks[..accepted], r => Assert.Equal(0, r));
            if (accepted < round.Draft.Length)
            {
                Assert.InRange(step.Ranks[accepted], 1, 11); // the target's token was not the draft's first choice
                corrections++;
            }
            else
            {
                Assert.Equal(-1, step.Ranks[accepted]); // the bonus follows the last draft, which the draft never ranked after
            }
        }

        Assert.True(corrections > 3);
    }

    [Fact]
    public void Dsd_TreesWithoutResidualUpdateBetweenSiblings_ChiSquareRejects()
    {
        var (result, stats) = DsdTrees(siblingResidual: false);
        output.WriteLine($"dsd trees, no sibling residual update: {result}; {stats}");
        Assert.True(result.PValue < Lossless.Alpha, $"chi-square failed to reject the broken variant: {result}");
    }

    /// <summary>dsd with a tree of depth 3, width 3 (up to 9 nodes), 4 tokens per session, counting the first two.</summary>
    private static (ChiSquareResult Result, DriveStats Stats) DsdTrees(bool siblingResidual, SamplingParams? sampling = null)
    {
        var s = sampling ?? Lossless.Plain;
        const int length = 2;
        var counts = new long[Lossless.Vocab * Lossless.Vocab];
        var stats = new DriveStats();
        var shape = new RoundShape(3, 3, 9, 0);
        for (var i = 0; i < Lossless.Samples; i++)
        {
            var settings = Settings($"tree-{i}", DecodingMode.Dsd, s, 4, 3, 9, DeterministicRandom.SampleSeed(0x7EE, i));
            var tokens = SessionDriver.RunShaped(Lossless.Draft, Lossless.Target, settings, Lossless.Prompt, shape, stats: stats, siblingResidual: siblingResidual);
            counts[Reference.Cell(tokens.AsSpan(0, length), Lossless.Vocab)]++;
        }

        return (ChiSquare.GoodnessOfFit(counts, Reference.Joint(Lossless.Target, Lossless.Prompt, length, s)), stats);
    }

    /// <summary>A device and verifier of <paramref name="mode"/>, with the first tree round drafted (not sent).</summary>
    private static (DraftSession Device, VerifierSession Verifier, DraftRound Round) FirstTree(DecodingMode mode, int maxTreeNodes = 8, int gamma = 3)
    {
        var sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : Lossless.Plain;
        var device = new DraftSession(Lossless.Draft, Settings($"hostile-{mode}", mode, sampling, 20, gamma, maxTreeNodes), Lossless.Prompt);
        var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        var round = device.PrepareRound(new RoundShape(gamma, 2, maxTreeNodes, 0), 0);
        Assert.NotNull(round.TreeParents);
        return (device, verifier, round);
    }

    private static void AssertRefused(VerifierSession verifier, DraftRound round, string reason)
    {
        var check = verifier.Check(round);
        Assert.Equal(RoundCheckKind.Error, check.Kind);
        Assert.Equal(ErrorCode.InvalidRequest, check.Code);
        Assert.Contains(reason, check.Reason);
    }

    [Fact]
    public void Check_HostileTrees_RefusedWithReasons()
    {
        var (device, verifier, round) = FirstTree(DecodingMode.Greedy);
        using var _ = device;
        using var __ = verifier;
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
        var n = round.Draft.Length;

        var forward = (int[])round.TreeParents!.Clone();
        forward[0] = 1;
        AssertRefused(verifier, round with { TreeParents = forward }, "a parent must be an earlier node or -1");
        var self = (int[])round.TreeParents!.Clone();
        self[n - 1] = n - 1; // a node its own parent: a cycle
        AssertRefused(verifier, round with { TreeParents = self }, "a parent must be an earlier node or -1");
        AssertRefused(verifier, round with { TreeParents = round.TreeParents![..^1] }, "parents for");
        AssertRefused(verifier, round with { TreeParents = [-2, .. round.TreeParents![1..]] }, "a parent must be an earlier node or -1");
        AssertRefused(verifier, round with { TreeParents = [] }, "the tree has 0 parents for");
        AssertRefused(verifier, round with { Draft = [], TreeParents = [] }, "the session allows 1 to 8");
        AssertRefused(verifier, round with { Draft = new int[9], TreeParents = Enumerable.Repeat(-1, 9).ToArray() }, "the session allows 1 to 8");
        AssertRefused(verifier, round with { Draft = [0, 1, 2, 3], TreeParents = [-1, 0, 1, 2] }, "deep, the session allows 3");
        AssertRefused(verifier, round with { Draft = [.. round.Draft[..^1], Lossless.Vocab] }, "outside the vocabulary");

        // The verifier still takes the honest round.
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
    }

    [Fact]
    public void Check_TreesWhereTheSessionOffersNone_Refused()
    {
        var (device, verifier, round) = FirstTree(DecodingMode.Greedy);
        using var _ = device;
        using var __ = verifier;
        using var chainsOnly = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId) with { MaxTreeNodes = 0 }, SessionDriver.DeviceId);
        AssertRefused(chainsOnly, round, "opened for chains only");
        foreach (var mode in new[] { DecodingMode.Dssd, DecodingMode.Rsr })
        {
            var open = device.OpenRequest(SessionDriver.DeviceId) with { Mode = mode, Sampling = Lossless.Plain.ToWire() };
            using var other = new VerifierSession(Lossless.Target, open, SessionDriver.DeviceId);
            AssertRefused(other, round with { DraftProbs = Enumerable.Repeat(0.5f, round.Draft.Length).ToArray(), Proposals = 4 }, "does not offer token trees");
        }

        // dsd at temperature 0 (one-hot rows) drafts chains too.
        using var coldDsd = new DraftSession(Lossless.Draft, Settings("cold", DecodingMode.Dsd, SamplingParams.Greedy, 20, 3, 8), Lossless.Prompt);
        Assert.Equal(0, coldDsd.OpenRequest("d").MaxTreeNodes);
        Assert.Null(coldDsd.PrepareRound(new RoundShape(3, 2, 8, 0), 0).TreeParents);

        // A device of a mode without trees never sends one: it asks for none and drafts a chain.
        using var rsr = new DraftSession(Lossless.Draft, Settings("rsr", DecodingMode.Rsr, Lossless.Plain, 20, 3, 8), Lossless.Prompt);
        Assert.Equal(0, rsr.OpenRequest("d").MaxTreeNodes);
        var chain = rsr.PrepareRound(new RoundShape(3, 2, 8, 0), 4);
        Assert.Null(chain.TreeParents);
        Assert.Equal(3, chain.Draft.Length);
    }

    [Fact]
    public void Check_DsdTreeWithBadRows_Refused()
    {
        var (device, verifier, round) = FirstTree(DecodingMode.Dsd);
        using var _ = device;
        using var __ = verifier;
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
        var rows = MemoryMarshal.Cast<byte, float>(round.DraftDistributions).ToArray();
        var expanded = TreeVerifier.Expanded(round.TreeParents);
        Assert.Equal(expanded.Length * Lossless.Vocab, rows.Length);
        AssertRefused(verifier, round with { DraftDistributions = round.DraftDistributions![..^4] }, "draft rows");
        AssertRefused(verifier, round with { DraftDistributions = null }, "draft rows");
        var negative = (float[])rows.Clone();
        negative[1] = -0.5f;
        AssertRefused(verifier, round with { DraftDistributions = MemoryMarshal.AsBytes(negative.AsSpan()).ToArray() }, "draft rows");
        var siblings = Enumerable.Range(0, round.Draft.Length).Where(i => round.TreeParents![i] == -1).ToArray();
        Assert.True(siblings.Length >= 2, "the root should have two children");
        var repeated = (int[])round.Draft.Clone();
        repeated[siblings[1]] = repeated[siblings[0]];
        AssertRefused(verifier, round with { Draft = repeated }, "repeats a sibling's token");
        var zero = (float[])rows.Clone();
        zero[round.Draft[0]] = 0f; // node 0 hangs from the root, whose row comes first
        AssertRefused(verifier, round with { DraftDistributions = MemoryMarshal.AsBytes(zero.AsSpan()).ToArray() }, "draft probability 0");
    }

    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    public void Check_DuplicateTreeRound_GetsCachedVerdict(DecodingMode mode)
    {
        var (device, verifier, round) = FirstTree(mode);
        using var _ = device;
        using var __ = verifier;
        var step = SessionDriver.VerifyAndApply(device, verifier, Lossless.Target, round, 0);
        Assert.Equal(RoundStepKind.Committed, step.Kind);
        var again = verifier.Check(round);
        Assert.Equal(RoundCheckKind.Reply, again.Kind);
        Assert.Equal(step.Count - 1, again.Verdict!.Accepted);
        Assert.NotNull(again.Verdict.AcceptedNodes);
        Assert.Equal(again.Verdict.Accepted, again.Verdict.AcceptedNodes!.Length);
        Assert.Equal(RoundStepKind.Ignored, device.Apply(again.Verdict).Kind);
    }

    [Fact]
    public void Apply_TreeVerdictWithoutAPath_ThrowsAndChangesNothing()
    {
        var (device, verifier, round) = FirstTree(DecodingMode.Greedy, maxTreeNodes: 8);
        using var _ = device;
        using var __ = verifier;
        Assert.Equal(RoundCheckKind.Ok, verifier.Check(round).Kind);
        var feed = verifier.BeginFeed(round);
        TokenTree.FeedBatch(Lossless.Target, [feed]);
        var verdict = verifier.Complete(round, feed.Logits.Span, 1, 0, 0);
        var before = device.Committed.Count;
        var siblings = Enumerable.Range(0, round.Draft.Length).Where(i => round.TreeParents![i] == -1).ToArray();
        Assert.True(siblings.Length >= 2);
        var notAPath = siblings[..2];
        Assert.Throws<ProtocolViolationException>(() => device.Apply(verdict with { Accepted = 2, AcceptedNodes = notAPath }));
        Assert.Throws<ProtocolViolationException>(() => device.Apply(verdict with { AcceptedNodes = [.. verdict.AcceptedNodes!, 0] }));
        Assert.Throws<ProtocolViolationException>(() => device.Apply(verdict with { Accepted = 1, AcceptedNodes = [round.Draft.Length] }));
        Assert.Equal(before, device.Committed.Count);
        Assert.Equal(RoundStepKind.Committed, device.Apply(verdict).Kind);
        Assert.Equal(before + verdict.Accepted + 1, device.Committed.Count);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    public void Resume_MidGenerationWithTrees_GivesTheUninterruptedText(DecodingMode mode)
    {
        var sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : Lossless.Plain;
        var settings = Settings("resume", mode, sampling, 30, 4, 10, seed: 123);
        var shape = new RoundShape(4, 2, 10, 0);
        var whole = SessionDriver.RunShaped(Lossless.Draft, Lossless.Target, settings, Lossless.Prompt, shape);

        DraftSessionState state;
        using (var device = new DraftSession(Lossless.Draft, settings, Lossless.Prompt))
        using (var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId))
        {
            for (var r = 0; r < 3; r++)
            {
                SessionDriver.VerifyAndApply(device, verifier, Lossless.Target, device.PrepareRound(shape, 0), 0);
            }

            device.PrepareRound(shape, 0); // in flight when the process dies
            state = device.Snapshot();
        }

        using var resumed = new DraftSession(Lossless.Draft, settings, state);
        using var fresh = new VerifierSession(Lossless.Target, resumed.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        while (!resumed.IsComplete)
        {
            SessionDriver.VerifyAndApply(resumed, fresh, Lossless.Target, resumed.PrepareRound(shape, 0), 0);
        }

        Assert.Equal(whole, resumed.Committed.Skip(Lossless.Prompt.Length).ToArray());
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(257)]
    public void Settings_TreeBudgetOutOfRange_RefusedNamingTheSetting(int nodes)
    {
        var settings = Settings("bad", DecodingMode.Greedy, SamplingParams.Greedy, 20, 4, nodes);
        Assert.Equal($"max tree nodes must be between 0 (chains only) and 256, got {nodes}", settings.Validate());
        Assert.Throws<ArgumentException>(() => new DraftSession(Lossless.Draft, settings, Lossless.Prompt));
    }

    [Fact]
    public void TreeVerifier_Greedy_WalksTheArgmaxChildren()
    {
        // V = 3. Root's children: 1 (node 0), 2 (node 1); node 1's children: 0 (node 2), 2 (node 3).
        int[] tokens = [1, 2, 0, 2];
        int[] parents = [-1, -1, 1, 1];
        float[] rows =
        [
            0, 0, 1, // root: argmax 2 → node 1
            1, 0, 0, // after node 0 (unused)
            0, 0, 1, // after node 1: argmax 2 → node 3
            1, 0, 0, // after node 2 (unused)
            0, 1, 0, // after node 3: a leaf, the token is the argmax 1
        ];
        var outcome = TreeVerifier.Verify(DecodingMode.Greedy, rows, 3, tokens, parents, default, new RoundRandom(1, 2, 3), 10);
        Assert.Equal([1, 3], outcome.Path);
        Assert.Equal(1, outcome.Token);
    }
}

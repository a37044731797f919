using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;

namespace IotDsd.Core.Speculative;

/// <summary>The verifier's decision for a token-tree round: the accepted path and the token after it.</summary>
/// <param name="Path">Accepted nodes, root first; the path's depth is the number of accepted drafts.</param>
/// <param name="Token">The token committed after the path (the target's correction, residual sample or bonus).</param>
public sealed record TreeOutcome(int[] Path, int Token);

/// <summary>
/// Verification of a token tree (docs/protocol.md §14). Pure: rows and randomness in, outcome out.
/// Greedy walks from the root taking the child equal to the target's argmax. dsd is multi-candidate recursive
/// rejection sampling over children drawn without replacement from the draft's row Q at their parent: child j was drawn
/// from Q_j (Q without the earlier siblings, renormalised); children are tried in order, x_j is accepted with
/// probability min(1, P′_j(x_j)/Q_j(x_j)), and on rejection P′_{j+1} = norm(max(P′_j − Q_j, 0)); when every child is
/// rejected the token is sampled from P′; an accepted child is descended into, and at a node without children the
/// bonus token is sampled from P there. The committed token has exactly the target's distribution.
/// </summary>
public static class TreeVerifier
{
    /// <summary>True for the modes that offer token trees: greedy and dsd (dssd and rsr keep only Q(d) on the wire).</summary>
    public static bool OffersTrees(DecodingMode mode) => mode is DecodingMode.Greedy or DecodingMode.Dsd;

    /// <summary>
    /// The nodes that have children, in ascending order, after the root (−1) which is always first: the order of the
    /// draft rows a dsd tree round carries.
    /// </summary>
    public static int[] Expanded(ReadOnlySpan<int> parents)
    {
        var has = new bool[parents.Length];
        foreach (var p in parents)
        {
            if (p >= 0) has[p] = true;
        }

        var list = new List<int>(parents.Length + 1) { -1 };
        for (var i = 0; i < parents.Length; i++)
        {
            if (has[i]) list.Add(i);
        }

        return [.. list];
    }

    /// <summary>Decides a tree round.</summary>
    /// <param name="mode">Greedy or dsd.</param>
    /// <param name="targetRows">(N + 1)·V sampling probabilities: row 0 after the last pending token, row 1 + i after node i.</param>
    /// <param name="vocab">V.</param>
    /// <param name="tokens">The N draft nodes.</param>
    /// <param name="parents">Parent of each node (an earlier node, or −1 for the root's children); validated by the caller.</param>
    /// <param name="draftRows">dsd: Q at each node with children, in <see cref="Expanded"/> order, V each. Ignored for greedy.</param>
    /// <param name="random">The round's randomness.</param>
    /// <param name="firstPosition">Absolute position of the root's children (the committed length).</param>
    /// <param name="siblingResidual">
    /// True (always, in the product): after a rejected child P′ becomes norm(max(P′ − Q, 0)) before the next child is
    /// tried. False exists only so a test can show that skipping the update breaks the distribution.
    /// </param>
    public static TreeOutcome Verify(
        DecodingMode mode,
        ReadOnlySpan<float> targetRows,
        int vocab,
        ReadOnlySpan<int> tokens,
        ReadOnlySpan<int> parents,
        ReadOnlySpan<float> draftRows,
        RoundRandom random,
        long firstPosition,
        bool siblingResidual = true)
    {
        var n = tokens.Length;
        if (targetRows.Length != (n + 1) * vocab || parents.Length != n)
        {
            throw new ArgumentException($"expected {n + 1} target rows of {vocab} and {n} parents", nameof(targetRows));
        }

        if (!OffersTrees(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "mode does not offer token trees");
        }

        var expanded = mode == DecodingMode.Dsd ? Expanded(parents) : [];
        var path = new List<int>();
        var children = new List<int>();
        var pPrime = mode == DecodingMode.Dsd ? new double[vocab] : [];
        var scratch = mode == DecodingMode.Dsd ? new float[vocab] : [];
        var qj = mode == DecodingMode.Dsd ? new double[vocab] : [];
        var node = -1;
        while (true)
        {
            var p = targetRows.Slice((node + 1) * vocab, vocab);
            var position = firstPosition + path.Count;
            children.Clear();
            for (var c = node + 1; c < n; c++)
            {
                if (parents[c] == node) children.Add(c);
            }

            if (mode == DecodingMode.Greedy)
            {
                var best = Distribution.ArgMax(p);
                var next = -1;
                foreach (var c in children)
                {
                    if (tokens[c] == best)
                    {
                        next = c;
                        break;
                    }
                }

                if (next < 0)
                {
                    return new TreeOutcome([.. path], best);
                }

                node = next;
                path.Add(node);
                continue;
            }

            if (children.Count == 0)
            {
                return new TreeOutcome([.. path], Distribution.Sample(p, random.Uniform(RandomStream.Bonus, position)));
            }

            // Q_1 is the node's draft row; Q_{j+1} is Q_j without x_j, renormalised (children are drawn without replacement).
            var row = Array.IndexOf(expanded, node);
            var q = draftRows.Slice(row * vocab, vocab);
            double qMass = 0;
            for (var t = 0; t < vocab; t++)
            {
                pPrime[t] = p[t];
                qj[t] = q[t] > 0f ? q[t] : 0.0;
                qMass += qj[t];
            }

            var accepted = -1;
            for (var j = 0; j < children.Count && qMass > 0; j++)
            {
                for (var t = 0; t < vocab; t++) qj[t] /= qMass;
                var x = tokens[children[j]];
                var qx = qj[x];
                var ratio = qx <= 0 ? 0.0 : Math.Min(1.0, pPrime[x] / qx);
                if (random.Uniform(RandomStream.Accept, position, j) < ratio)
                {
                    accepted = children[j];
                    break;
                }

                if (siblingResidual)
                {
                    Subtract(pPrime, qj);
                }

                qMass = 1.0 - qj[x];
                qj[x] = 0;
            }

            if (accepted < 0)
            {
                for (var t = 0; t < vocab; t++) scratch[t] = (float)pPrime[t];
                return new TreeOutcome([.. path], Distribution.Sample(scratch, random.Uniform(RandomStream.Residual, position)));
            }

            node = accepted;
            path.Add(node);
        }
    }

    /// <summary>P′ ← norm(max(P′ − Q_j, 0)); left as it is when nothing remains (then P′ = Q_j up to rounding).</summary>
    private static void Subtract(double[] pPrime, double[] q)
    {
        double mass = 0;
        for (var t = 0; t < pPrime.Length; t++)
        {
            mass += Math.Max(0.0, pPrime[t] - q[t]);
        }

        if (!(mass > 1e-12))
        {
            return;
        }

        for (var t = 0; t < pPrime.Length; t++)
        {
            pPrime[t] = Math.Max(0.0, pPrime[t] - q[t]) / mass;
        }
    }
}

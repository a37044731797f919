using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Connections;

namespace IotDsd.Edge.Drafting;

/// <summary>Which shaper a generation runs with.</summary>
internal static class RoundShapers
{
    /// <summary>
    /// <see cref="EdgeOptions.Shape"/>: that shape every round. <see cref="EdgeOptions.Sequential"/>, or a sampling mode
    /// without <see cref="EdgeOptions.AdaptGammaInSampling"/>: one chain of the session's γ, one round in flight, no
    /// adaptation. Otherwise the <see cref="ShapeController"/> (docs/protocol.md §6): chains up to the session's γ
    /// (<see cref="EdgeOptions.MaxDepth"/>), token trees where the session offers them, and rounds sent ahead in greedy.
    /// </summary>
    public static IRoundShaper For(EdgeOptions options, DraftSession session, SessionSettings settings, bool mayAdapt, LinkFit fit, MqttConnection connection)
    {
        if (options.Shape is { } pinned)
        {
            return new FixedShape(pinned);
        }

        if (options.Sequential || !mayAdapt)
        {
            return new FixedShape(RoundShape.Chain(settings.Gamma));
        }

        var trees = session.OffersTrees;
        var limits = new ShapeLimits(
            session.Settings.Gamma,
            MaxWidth: trees ? 4 : 1,
            MaxNodes: trees ? session.Settings.MaxTreeNodes : 0,
            MaxPipeline: settings.Mode == DecodingMode.Greedy ? Math.Min(options.PipelineDepth, 1) : 0,
            AheadOutcomes: options.PredictedOutcomes,
            StreamTokens: options.StreamTokens);
        var controller = new ShapeController(limits, RoundShape.Chain(settings.Gamma), transferMs: (shape, _) =>
            connection.UplinkBytesPerSecond is > 0 and var bps && fit.RowBytes > 0 ? shape.Nodes * fit.RowBytes * 1000 / bps : 0);
        return options.PipelineMinRoundTripMs > 0 ? new LinkGate(controller, RoundShape.Chain(settings.Gamma), options.PipelineMinRoundTripMs) : controller;
    }

    /// <summary>
    /// The sequential shape (<paramref name="local"/>, a chain of the session's γ) until the measured round trip outside
    /// the verifier reaches <paramref name="minLinkMs"/> (<see cref="EdgeOptions.PipelineMinRoundTripMs"/>): on a local
    /// link there is no round trip to hide, and trees and rounds sent ahead only add draft and verifier work and
    /// requests. The controller learns from every round meanwhile, and takes over once the link is slow enough. On a
    /// local link with a shared verifier (<see cref="ShapeController.SharedBatch"/>) the controller picks the chain's
    /// length, down to a streamed round: each session's drafts then cost the others' passes, and on a compute-bound
    /// verifier deep chains cost more than they save.
    /// </summary>
    private sealed class LinkGate(ShapeController inner, RoundShape local, double minLinkMs) : IRoundShaper
    {
        private double _linkMs = -1; // smoothed round trip less the verifier's batch time; −1 until the second round
        private bool _warm; // the first round pays the models' and the connection's warm-up: it says nothing of the link

        public RoundShape Next(int maxDepth)
        {
            inner.ChainsOnly = _linkMs < minLinkMs;
            return !inner.ChainsOnly || ((_warm || inner.Primed) && inner.Batch >= ShapeController.SharedBatch) ? inner.Next(maxDepth) : local.Capped(maxDepth);
        }

        public void Prime(int sessions, double passFixedMs, double passPerTokenMs) => inner.Prime(sessions, passFixedMs, passPerTokenMs);

        public void Observe(in RoundObservation observation)
        {
            if (_warm && observation.Streamed == 0)
            {
                // A streamed round's time is its passes, not the link.
                var link = Math.Max(0, observation.RoundTripMs - observation.VerifyMs);
                _linkMs = _linkMs < 0 ? link : (0.8 * _linkMs) + (0.2 * link);
            }

            _warm = true;
            inner.Observe(observation);
        }
    }

    /// <summary>
    /// The settings a session runs with: the user's, or — when the controller may shape its rounds — with room for the
    /// deepest round it may choose (<see cref="EdgeOptions.MaxDepth"/>) and for token trees
    /// (<see cref="EdgeOptions.MaxTreeNodes"/>).
    /// </summary>
    public static SessionSettings Shaped(EdgeOptions options, SessionSettings settings)
    {
        var mayAdapt = settings.Mode == DecodingMode.Greedy || options.AdaptGammaInSampling;
        if (options.Shape is { } pinned)
        {
            return settings with { Gamma = Math.Max(settings.Gamma, pinned.Depth), MaxTreeNodes = pinned.IsTree ? Math.Max(settings.MaxTreeNodes, pinned.Nodes) : settings.MaxTreeNodes };
        }

        return options.Sequential || !mayAdapt
            ? settings
            : settings with { Gamma = Math.Max(settings.Gamma, options.MaxDepth), MaxTreeNodes = Math.Max(settings.MaxTreeNodes, options.MaxTreeNodes) };
    }
}

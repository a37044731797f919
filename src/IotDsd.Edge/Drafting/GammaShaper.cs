using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// Chains of γ chosen by <see cref="GammaController"/> (with <see cref="EdgeOptions.AdaptiveGamma"/>; else the session's
/// γ), sent <see cref="EdgeOptions.PipelineDepth"/> rounds ahead in greedy mode once the measured round trip outside
/// the verifier reaches <paramref name="minLinkMs"/> (below it a round sent ahead saves almost nothing and costs
/// requests). The default shape of a device round until an RTT-aware controller chooses trees and pipeline depth too.
/// </summary>
internal sealed class GammaShaper(GammaController? controller, int gamma, int pipeline, double minLinkMs) : IRoundShaper
{
    private double _linkMs = -1; // smoothed round trip less the verifier's batch time; −1 before the first round

    public RoundShape Next(int maxDepth)
    {
        var depth = controller is null || maxDepth <= 0 ? Math.Min(gamma, maxDepth) : controller.Choose(cap: maxDepth);
        var ahead = minLinkMs <= 0 || _linkMs >= minLinkMs ? pipeline : 0;
        return RoundShape.Chain(Math.Max(0, depth)) with { Pipeline = ahead };
    }

    public void Observe(in RoundObservation observation)
    {
        var link = Math.Max(0, observation.RoundTripMs - observation.VerifyMs);
        _linkMs = _linkMs < 0 ? link : (0.8 * _linkMs) + (0.2 * link);
        controller?.Observe(observation.Drafted, observation.Accepted, observation.DraftMs, observation.RoundTripMs, observation.VerifyMs);
    }
}

/// <summary>Which shaper a generation runs with.</summary>
internal static class RoundShapers
{
    /// <summary>
    /// <see cref="EdgeOptions.Sequential"/>: one chain of the session's γ, one round in flight, no adaptation. Otherwise
    /// <see cref="GammaShaper"/>: adaptive γ where allowed, rounds pipelined in greedy mode.
    /// </summary>
    public static IRoundShaper For(EdgeOptions options, SessionSettings settings, bool mayAdapt) => options.Sequential
        ? new FixedShape(RoundShape.Chain(settings.Gamma))
        : new GammaShaper(
            options.AdaptiveGamma && mayAdapt ? new GammaController(settings.Gamma, settings.Gamma) : null,
            settings.Gamma,
            settings.Mode == DecodingMode.Greedy ? options.PipelineDepth : 0,
            options.PipelineMinRoundTripMs);
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Adaptive;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Hosting;

namespace IotDsd.Edge.Drafting;

/// <summary>
/// Chains of γ chosen by <see cref="GammaController"/> (with <see cref="EdgeOptions.AdaptiveGamma"/>; else the session's
/// γ), sent <see cref="EdgeOptions.PipelineDepth"/> rounds ahead in greedy mode. The default shape of a device round
/// until an RTT-aware controller chooses trees and pipeline depth too.
/// </summary>
internal sealed class GammaShaper(GammaController? controller, int gamma, int pipeline) : IRoundShaper
{
    public RoundShape Next(int maxDepth)
    {
        var depth = controller is null || maxDepth <= 0 ? Math.Min(gamma, maxDepth) : controller.Choose(cap: maxDepth);
        return RoundShape.Chain(Math.Max(0, depth)) with { Pipeline = pipeline };
    }

    public void Observe(in RoundObservation observation) =>
        controller?.Observe(observation.Drafted, observation.Accepted, observation.DraftMs, observation.RoundTripMs, observation.VerifyMs);
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
            settings.Mode == DecodingMode.Greedy ? options.PipelineDepth : 0);
}

using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Engine;

/// <summary>
/// The simulated link's serialisation time for a round of γ drafts, as the shape controller sees it: the
/// request, and the verdict weighted by the chance that some draft is rejected (a rejection carries the correction).
/// </summary>
internal static class RoundTransfer
{
    /// <summary>Expected milliseconds on the wire, both ways, for a round of <paramref name="gamma"/> at acceptance <paramref name="alpha"/>.</summary>
    public static double Ms(Scenario s, MessageSizes sizes, int gamma, double alpha)
    {
        var all = Math.Pow(alpha, gamma);
        var up = (sizes.RoundUp(gamma, first: false) + s.UplinkFramingBytes) * 8.0 / (s.Link.UpMbps * 1000);
        var down = ((all * sizes.TokenVerdict) + ((1 - all) * sizes.Downlink(gamma, 0, (int)Math.Round(s.RsrProposals))) + s.DownlinkFramingBytes)
            * 8.0 / (s.Link.DownMbps * 1000);
        return up + down;
    }
}

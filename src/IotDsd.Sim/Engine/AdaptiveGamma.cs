using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Engine;

/// <summary>
/// docs/protocol.md §6 on one device: keeps running estimates of acceptance by position, the round-trip overhead and the
/// verifier's time, and picks the γ that maximises E[N](γ) / (γ·t_draft + RTT + t_verify(γ) + transfer(γ)).
/// </summary>
internal sealed class AdaptiveGamma
{
    private const double Weight = 0.1;
    private readonly Scenario _scenario;
    private readonly MessageSizes _sizes;
    private readonly double[] _alpha;
    private double _overheadMs;
    private double _verifyFixedMs;

    public AdaptiveGamma(Scenario scenario, MessageSizes sizes)
    {
        _scenario = scenario;
        _sizes = sizes;
        _alpha = new double[scenario.Gamma + 1];
        for (var i = 1; i <= scenario.Gamma; i++)
        {
            _alpha[i] = 0.5; // an uninformed prior; the first rounds correct it
        }

        _overheadMs = scenario.Link.RttMs;
        _verifyFixedMs = scenario.Verifier.CostMs(1, 1);
    }

    /// <summary>Learns from a finished round: which positions were accepted, and how long the round took beyond drafting.</summary>
    public void Observe(int gamma, int accepted, double roundMs, double draftMs, double verifyMs)
    {
        for (var i = 1; i <= gamma && i <= accepted + 1; i++)
        {
            _alpha[i] += Weight * ((i <= accepted ? 1 : 0) - _alpha[i]);
        }

        var overhead = roundMs - draftMs - verifyMs - Transfer(gamma);
        _overheadMs += Weight * (Math.Max(0, overhead) - _overheadMs);
        _verifyFixedMs += Weight * (verifyMs - _scenario.Verifier.PerTokenMs * (gamma + 1) - _verifyFixedMs);
    }

    /// <summary>The γ with the highest expected goodput.</summary>
    public int Choose()
    {
        var best = 1;
        var bestRate = 0.0;
        var expected = 1.0;
        var survive = 1.0;
        for (var g = 1; g <= _scenario.Gamma; g++)
        {
            survive *= _alpha[g];
            expected += survive;
            var time = (g * _scenario.Device.DraftMsPerToken) + _scenario.Device.DraftFixedMs + _overheadMs
                + Math.Max(0, _verifyFixedMs) + (_scenario.Verifier.PerTokenMs * (g + 1)) + Transfer(g);
            var rate = expected / Math.Max(time, 1e-6);
            if (rate > bestRate)
            {
                bestRate = rate;
                best = g;
            }
        }

        return best;
    }

    /// <summary>Expected serialisation time of a round of γ: the request, and the verdict weighted by the chance of a rejection.</summary>
    private double Transfer(int gamma)
    {
        var all = 1.0;
        for (var i = 1; i <= gamma; i++)
        {
            all *= _alpha[i];
        }

        var up = (_sizes.RoundUp(gamma, first: false) + _scenario.UplinkFramingBytes) * 8.0 / (_scenario.Link.UpMbps * 1000);
        var down = ((all * _sizes.TokenVerdict) + ((1 - all) * _sizes.Downlink(gamma, 0, (int)Math.Round(_scenario.RsrProposals))) + _scenario.DownlinkFramingBytes)
            * 8.0 / (_scenario.Link.DownMbps * 1000);
        return up + down;
    }
}

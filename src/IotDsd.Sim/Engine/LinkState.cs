using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Engine;

/// <summary>
/// One device's link, one direction: messages are serialised at the link's bandwidth in order, then delayed by half
/// the round-trip time plus jitter; each lost packet costs a retransmission timeout; a message sent during an outage
/// waits for the link to come back and the client to reconnect. Deliveries keep their order, as on TCP.
/// </summary>
internal struct LinkState
{
    private double _freeAt;
    private double _lastArrival;

    /// <summary>When a message of <paramref name="wireBytes"/> sent at <paramref name="now"/> arrives.</summary>
    public double Send(double now, int wireBytes, double mbps, LinkProfile link, double outagePhase, SimRandom random)
    {
        var start = Math.Max(now, _freeAt);
        start = AfterOutage(start, link, outagePhase);
        var serialise = wireBytes * 8.0 / (mbps * 1000.0); // ms
        _freeAt = start + serialise;
        var delay = link.RttMs / 2;
        if (link.JitterMs > 0)
        {
            delay = Math.Max(0, delay + (link.JitterMs * random.Symmetric()));
        }

        if (link.Loss > 0)
        {
            var rto = Math.Max(link.MinRtoMs, link.RttMs + (4 * link.JitterMs));
            var packets = Math.Max(1, (wireBytes + link.SegmentBytes - 1) / link.SegmentBytes);
            for (var p = 0; p < packets; p++)
            {
                while (random.Next() < link.Loss)
                {
                    delay += rto;
                }
            }
        }

        var arrival = Math.Max(_freeAt + delay, _lastArrival);
        _lastArrival = arrival;
        return arrival;
    }

    /// <summary>The first time at or after <paramref name="t"/> the link is up (and reconnected).</summary>
    public static double AfterOutage(double t, LinkProfile link, double phase)
    {
        if (link.OutageEveryS <= 0 || link.OutageS <= 0)
        {
            return t;
        }

        var every = link.OutageEveryS * 1000;
        var since = (t - phase) % every;
        if (since < 0)
        {
            since += every;
        }

        return since < link.OutageS * 1000 ? t - since + (link.OutageS * 1000) + link.ReconnectMs : t;
    }
}

using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Engine;

public sealed partial class Simulator
{
    /// <summary>
    /// Cloud modes: the verifier generates for the session (one token per pass, or a co-located speculative round) and
    /// streams each token to the device; the session stays at the verifier until its tokens are produced.
    /// </summary>
    private void CloudStep(DeviceSim d, int id, VerifierSim v)
    {
        var remaining = _s.TokensPerRequest - d.Produced;
        var produced = Math.Min(d.Accepted + 1, remaining);
        d.Produced += produced;
        d.Rounds++;
        d.Drafted += d.Gamma;
        d.AcceptedTotal += d.Accepted;
        for (var i = 0; i < produced; i++)
        {
            _events.Push(SendDown(d, _now, _sizes.StreamedToken), EventKind.StreamAtDevice, id, 1);
        }

        if (d.Produced >= _s.TokensPerRequest)
        {
            v.Active--;
            return;
        }

        if (_s.Mode == SimMode.CloudSd)
        {
            d.Gamma = Math.Min(_s.Gamma, _s.TokensPerRequest - d.Produced - 1);
            _events.Push(_now + (d.Gamma * _s.Verifier.CloudDraftMsPerToken), EventKind.AtVerifier, id);
        }
        else
        {
            v.Queue.Enqueue(id); // the next step joins the next batch
        }
    }

    private void StreamAtDevice(int id, int tokens)
    {
        var d = _devices[id];
        d.Generated += tokens;
        if (!d.GotFirst)
        {
            d.GotFirst = true;
            d.TtftMs += _now - d.RequestStart;
        }

        if (d.Generated >= _s.TokensPerRequest)
        {
            FinishRequest(d, id);
        }
    }

    private SimResult Summarise(long events, double wallMs)
    {
        long tokens = 0, rounds = 0, drafted = 0, accepted = 0, up = 0, down = 0, upWire = 0, downWire = 0, followUps = 0, hits = 0, requests = 0;
        double requestMs = 0, ttft = 0;
        foreach (var d in _devices)
        {
            tokens += d.Tokens;
            rounds += d.Rounds;
            drafted += d.Drafted;
            accepted += d.AcceptedTotal;
            up += d.UpPayload;
            down += d.DownPayload;
            upWire += d.UpWire;
            downWire += d.DownWire;
            followUps += d.FollowUps;
            hits += d.PipelineHits;
            requests += d.Requests;
            requestMs += d.RequestMs;
            ttft += d.TtftMs;
        }

        double busy = 0, batches = 0, batched = 0;
        foreach (var v in _verifiers)
        {
            busy += v.BusyMs;
            batches += v.Batches;
            batched += v.BatchedRounds;
        }

        static double Per(double a, double b) => b <= 0 ? 0 : a / b;
        var span = _now;
        return new SimResult
        {
            Mode = _s.Mode.Name(),
            Devices = _s.Devices,
            RttMs = _s.Link.RttMs,
            UpMbps = _s.Link.UpMbps,
            DownMbps = _s.Link.DownMbps,
            Gamma = _s.Gamma,
            Vocab = _s.Vocab,
            Tokens = tokens,
            Rounds = rounds,
            Requests = requests,
            TokensPerSecond = Per(tokens * 1000.0, requestMs),
            TimePerTokenMs = Per(requestMs, tokens),
            FleetTokensPerSecond = Per(tokens * 1000.0, span),
            TimeToFirstTokenMs = Per(ttft, requests),
            AcceptanceRate = Per(accepted, drafted),
            TokensPerRound = Per(tokens, rounds),
            MeanGamma = Per(drafted, rounds),
            MeanBatch = Per(batched, batches),
            VerifierUtilisation = Per(busy, span * _verifiers.Length),
            UplinkBytesPerToken = Per(up, tokens),
            DownlinkBytesPerToken = Per(down, tokens),
            UplinkWireBytesPerToken = Per(upWire, tokens),
            DownlinkWireBytesPerToken = Per(downWire, tokens),
            FollowUps = followUps,
            PipelineHits = hits,
            SimulatedSeconds = span / 1000,
            Events = events,
            WallMs = wallMs,
        };
    }
}

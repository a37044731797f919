using System.Diagnostics;
using IotDsd.Core.Adaptive;
using IotDsd.Sim.Scenarios;
using IotDsd.Sim.Wire;

namespace IotDsd.Sim.Engine;

/// <summary>
/// The discrete-event simulation of a fleet: devices draft, links carry the real message sizes, the broker adds its
/// hop, verifiers batch rounds and charge a cost per batch, and acceptance is drawn per position. Deterministic for
/// a seed. Time is in milliseconds.
/// </summary>
public sealed partial class Simulator
{
    private readonly Scenario _s;
    private readonly MessageSizes _sizes;
    private readonly SimRandom _random;
    private readonly EventQueue _events = new();
    private readonly DeviceSim[] _devices;
    private readonly VerifierSim[] _verifiers;
    private double _now;

    private Simulator(Scenario scenario)
    {
        _s = scenario;
        _sizes = new MessageSizes(scenario);
        _random = new SimRandom(scenario.Seed);
        _devices = new DeviceSim[scenario.Devices];
        _verifiers = new VerifierSim[scenario.Verifier.Count];
        for (var v = 0; v < _verifiers.Length; v++)
        {
            _verifiers[v] = new VerifierSim();
        }

        for (var i = 0; i < _devices.Length; i++)
        {
            _devices[i] = new DeviceSim
            {
                Verifier = i % _verifiers.Length,
                OutagePhase = _random.Next() * scenario.Link.OutageEveryS * 1000,
                Adaptive = scenario.AdaptiveGamma && scenario.Mode.IsDistributed() ? AdaptiveController(scenario, _sizes) : null,
            };
        }
    }

    /// <summary>
    /// docs/protocol.md §6 on one device: the edge's own shape controller, told the simulated link's transfer time. The
    /// simulator draws acceptance per position of a chain and sends no round ahead of a verdict, so it offers the
    /// controller chains only (its <c>Pipelining</c> drafts ahead, but sends after the verdict).
    /// </summary>
    private static ShapeController AdaptiveController(Scenario scenario, MessageSizes sizes) =>
        ShapeController.ForChains(scenario.Gamma, scenario.Gamma, transferMs: (shape, alpha) => RoundTransfer.Ms(scenario, sizes, shape.Nodes, alpha));

    /// <summary>Runs <paramref name="scenario"/> to completion (every device finishes its requests).</summary>
    public static SimResult Run(Scenario scenario, CancellationToken ct = default)
    {
        if (scenario.Validate() is { } bad)
        {
            throw new ArgumentException(bad, nameof(scenario));
        }

        var started = Stopwatch.GetTimestamp();
        var sim = new Simulator(scenario);
        var events = sim.Loop(ct);
        return sim.Summarise(events, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private long Loop(CancellationToken ct)
    {
        for (var i = 0; i < _devices.Length; i++)
        {
            _events.Push(0, EventKind.StartRequest, i);
        }

        long count = 0;
        while (_events.Count > 0)
        {
            if ((++count & 0xFFFF) == 0)
            {
                ct.ThrowIfCancellationRequested();
            }

            var e = _events.Pop();
            _now = e.Time;
            switch (e.Kind)
            {
                case EventKind.StartRequest: StartRequest(e.Id); break;
                case EventKind.Opened: ScheduleDraft(e.Id, hit: false); break;
                case EventKind.DraftDone: DraftDone(e.Id); break;
                case EventKind.AtVerifier: Enqueue(e.Id); break;
                case EventKind.BatchStart: BatchStart(e.Id); break;
                case EventKind.BatchDone: BatchDone(e.Id); break;
                case EventKind.AtDevice: AtDevice(e.Id); break;
                case EventKind.FollowUpDone: FollowUpDone(e.Id); break;
                case EventKind.StreamAtDevice: StreamAtDevice(e.Id, e.Arg); break;
            }
        }

        return count;
    }

    private double SendUp(DeviceSim d, double at, int payload)
    {
        var wire = payload + _s.UplinkFramingBytes;
        d.UpPayload += payload;
        d.UpWire += wire;
        return d.Up.Send(at, wire, _s.Link.UpMbps, _s.Link, d.OutagePhase, _random) + _s.BrokerHopMs;
    }

    private double SendDown(DeviceSim d, double at, int payload)
    {
        var wire = payload + _s.DownlinkFramingBytes;
        d.DownPayload += payload;
        d.DownWire += wire;
        return d.Down.Send(at + _s.BrokerHopMs, wire, _s.Link.DownMbps, _s.Link, d.OutagePhase, _random);
    }

    private void StartRequest(int id)
    {
        var d = _devices[id];
        d.RequestStart = _now;
        d.Generated = 0;
        d.Produced = 0;
        d.First = true;
        d.GotFirst = false;
        d.SpecReadyAt = double.NaN;
        _verifiers[d.Verifier].Active++;
        var atVerifier = SendUp(d, _now, _sizes.Open);
        if (_s.Mode.IsDistributed())
        {
            _events.Push(SendDown(d, atVerifier, _sizes.Opened), EventKind.Opened, id);
        }
        else
        {
            // The request is the open message; the verifier then generates (cloud-sd drafts first, in the cloud).
            d.Gamma = _s.Mode == SimMode.CloudSd ? Math.Min(_s.Gamma, _s.TokensPerRequest - 1) : 0;
            _events.Push(atVerifier + (d.Gamma * _s.Verifier.CloudDraftMsPerToken), EventKind.AtVerifier, id);
        }
    }

    private void ScheduleDraft(int id, bool hit)
    {
        var d = _devices[id];
        var gamma = d.Adaptive?.Next(_s.Gamma).Depth ?? _s.Gamma;
        d.Gamma = Math.Clamp(gamma, 0, Math.Min(_s.Gamma, _s.TokensPerRequest - d.Generated - 1));
        d.RoundStart = _now;
        var draft = d.Gamma > 0 ? (d.Gamma * _s.Device.DraftMsPerToken) + _s.Device.DraftFixedMs : 0;
        if (hit)
        {
            draft = Math.Max(0, d.SpecReadyAt - _now);
            d.PipelineHits++;
        }

        d.DraftMs = draft;
        _events.Push(_now + draft, EventKind.DraftDone, id);
    }

    private void DraftDone(int id)
    {
        var d = _devices[id];
        var at = SendUp(d, _now, _sizes.RoundUp(d.Gamma, d.First));
        d.First = false;
        if (_s.Pipelining && d.Gamma > 0)
        {
            // Guess the bonus token, then draft the next round as if everything is accepted.
            d.SpecReadyAt = _now + ((d.Gamma + 1) * _s.Device.DraftMsPerToken) + _s.Device.DraftFixedMs;
        }

        _events.Push(at, EventKind.AtVerifier, id);
    }

    private void Enqueue(int id)
    {
        var v = _verifiers[_devices[id].Verifier];
        v.Queue.Enqueue(id);
        TryStart(_devices[id].Verifier);
    }

    private void TryStart(int index)
    {
        var v = _verifiers[index];
        if (v.Busy || v.Waiting || v.Queue.Count == 0)
        {
            return;
        }

        // As the real verifier: wait for others only while other sessions may still send a round.
        if (_s.Verifier.BatchWaitMs > 0 && v.Queue.Count < _s.Verifier.MaxBatch && v.Queue.Count < v.Active)
        {
            v.Waiting = true;
            _events.Push(_now + _s.Verifier.BatchWaitMs, EventKind.BatchStart, index);
            return;
        }

        StartBatch(index);
    }

    private void BatchStart(int index)
    {
        _verifiers[index].Waiting = false;
        if (_verifiers[index].Queue.Count > 0 && !_verifiers[index].Busy)
        {
            StartBatch(index);
        }
    }

    private void StartBatch(int index)
    {
        var v = _verifiers[index];
        v.Batch.Clear();
        var tokens = 0;
        while (v.Batch.Count < _s.Verifier.MaxBatch && v.Queue.TryDequeue(out var id))
        {
            v.Batch.Add(id);
            tokens += _devices[id].Gamma + 1;
        }

        var cost = _s.Verifier.CostMs(v.Batch.Count, tokens);
        v.Busy = true;
        v.BusyMs += cost;
        v.Batches++;
        v.BatchedRounds += v.Batch.Count;
        foreach (var id in v.Batch)
        {
            _devices[id].VerifyMs = cost;
            _devices[id].BatchSize = v.Batch.Count;
        }

        _events.Push(_now + cost, EventKind.BatchDone, index);
    }

    private void BatchDone(int index)
    {
        var v = _verifiers[index];
        v.Busy = false;
        foreach (var id in v.Batch)
        {
            var d = _devices[id];
            d.Accepted = SampleAccepted(d.Gamma);
            if (_s.Mode.IsDistributed())
            {
                d.Proposals = 0;
                d.FollowUp = false;
                if (_s.Mode == SimMode.Rsr && d.Accepted < d.Gamma)
                {
                    var m = _s.RsrProposals;
                    d.Proposals = (int)m + (_random.Next() < m - Math.Floor(m) ? 1 : 0);
                    d.FollowUp = _random.Next() < _s.RsrFollowUpRate;
                }

                _events.Push(SendDown(d, _now, _sizes.Downlink(d.Gamma, d.Accepted, d.Proposals)), EventKind.AtDevice, id);
            }
            else
            {
                CloudStep(d, id, v);
            }
        }

        TryStart(index);
    }

    private int SampleAccepted(int gamma)
    {
        var k = 0;
        while (k < gamma && _random.Next() < _s.Acceptance.At(k + 1))
        {
            k++;
        }

        return k;
    }

    private void AtDevice(int id)
    {
        var d = _devices[id];
        if (d.FollowUp)
        {
            FollowUp(d, id);
            return;
        }

        Commit(d, id);
    }

    private void FollowUp(DeviceSim d, int id)
    {
        // Every proposal failed: ask for more; the verifier answers from the row it holds, without a forward pass.
        d.FollowUps++;
        var at = SendUp(d, _now, _sizes.MoreProposals);
        _events.Push(SendDown(d, at, _sizes.RsrRejection(d.Proposals)), EventKind.FollowUpDone, id);
    }

    private void FollowUpDone(int id)
    {
        var d = _devices[id];
        if (_random.Next() < _s.RsrFollowUpRate)
        {
            FollowUp(d, id);
            return;
        }

        Commit(d, id);
    }

    private void Commit(DeviceSim d, int id)
    {
        d.Generated += d.Accepted + 1;
        d.Rounds++;
        d.Drafted += d.Gamma;
        d.AcceptedTotal += d.Accepted;
        if (!d.GotFirst)
        {
            d.GotFirst = true;
            d.TtftMs += _now - d.RequestStart;
        }

        if (d.Gamma > 0)
        {
            d.Adaptive?.Observe(new RoundObservation(RoundShape.Chain(d.Gamma), d.Gamma, d.Accepted, default, d.DraftMs, d.VerifyMs, _now - d.RoundStart - d.DraftMs, d.BatchSize));
        }

        if (d.Generated >= _s.TokensPerRequest)
        {
            FinishRequest(d, id);
            return;
        }

        var hit = _s.Pipelining && d.Gamma > 0 && d.Accepted == d.Gamma && !double.IsNaN(d.SpecReadyAt)
            && _random.Next() < _s.Acceptance.BonusGuess;
        ScheduleDraft(id, hit);
    }

    private void FinishRequest(DeviceSim d, int id)
    {
        d.Tokens += _s.TokensPerRequest;
        d.RequestMs += _now - d.RequestStart;
        d.Requests++;
        if (_s.Mode.IsDistributed())
        {
            _verifiers[d.Verifier].Active--;
        }

        if (d.Requests < _s.RequestsPerDevice)
        {
            _events.Push(_now, EventKind.StartRequest, id);
        }
    }
}

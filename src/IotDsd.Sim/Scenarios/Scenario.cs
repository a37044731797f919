using System.Globalization;
using System.Text.Json.Serialization;

namespace IotDsd.Sim.Scenarios;

/// <summary>The device: how fast its draft model runs.</summary>
public sealed record DeviceProfile
{
    /// <summary>Draft model time per drafted token, milliseconds.</summary>
    public double DraftMsPerToken { get; init; } = 5;

    /// <summary>Fixed drafting cost per round (catching up on the committed tokens), milliseconds.</summary>
    public double DraftFixedMs { get; init; }
}

/// <summary>A device's link to the broker. Delay, jitter and loss apply per direction; bandwidth serialises messages.</summary>
public sealed record LinkProfile
{
    public double RttMs { get; init; } = 20;

    /// <summary>One-way delay varies uniformly by ± this much (messages stay in order, as on TCP).</summary>
    public double JitterMs { get; init; }

    public double UpMbps { get; init; } = 10;
    public double DownMbps { get; init; } = 10;

    /// <summary>Packet loss probability; each lost packet costs a TCP retransmission timeout.</summary>
    public double Loss { get; init; }

    /// <summary>Mean time between link outages, seconds; 0 is never.</summary>
    public double OutageEveryS { get; init; }

    /// <summary>Length of each outage, seconds.</summary>
    public double OutageS { get; init; }

    /// <summary>Reconnect and resubscribe after an outage, milliseconds (added to the outage).</summary>
    public double ReconnectMs { get; init; }

    /// <summary>Maximum segment size used to count packets for loss.</summary>
    public int SegmentBytes { get; init; } = 1448;

    /// <summary>Retransmission timeout floor, milliseconds (Linux: 200).</summary>
    public double MinRtoMs { get; init; } = 200;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"rtt {RttMs} ms, {UpMbps}/{DownMbps} Mbps up/down");
}

/// <summary>The verifiers: how many, how they batch, and what a forward pass costs.</summary>
public sealed record VerifierProfile
{
    public int Count { get; init; } = 1;
    public int MaxBatch { get; init; } = 32;

    /// <summary>Longest a round waits for others to join its batch (only while other sessions may send).</summary>
    public double BatchWaitMs { get; init; } = 1;

    /// <summary>Cost of a forward pass: fixed + per sequence × batch + per token × tokens in the batch (γ+1 each).</summary>
    public double FixedMs { get; init; } = 15;

    public double PerSequenceMs { get; init; } = 0.5;
    public double PerTokenMs { get; init; } = 0.25;

    /// <summary>Draft model time per token when it runs beside the target in the cloud (cloud-sd).</summary>
    public double CloudDraftMsPerToken { get; init; } = 1;

    /// <summary>The verifier's forward-pass time for <paramref name="batch"/> sequences holding <paramref name="tokens"/> tokens.</summary>
    public double CostMs(int batch, int tokens) => FixedMs + (PerSequenceMs * batch) + (PerTokenMs * tokens);
}

/// <summary>How drafts are accepted: the probability that position i is accepted given positions before it were.</summary>
public sealed record AcceptanceProfile
{
    /// <summary>Conditional acceptance by position (1-based positions at index 0, 1, ...); the last value repeats.</summary>
    public IReadOnlyList<double> ByPosition { get; init; } = [0.8];

    /// <summary>Optimistic pipelining: the chance the device's own guess of the bonus token is the one the verifier draws.</summary>
    public double BonusGuess { get; init; } = 0.6;

    public double At(int position) => ByPosition[Math.Min(position, ByPosition.Count) - 1];
}

/// <summary>A whole simulated deployment.</summary>
public sealed record Scenario
{
    public SimMode Mode { get; init; } = SimMode.Rsr;
    public int Gamma { get; init; } = 4;

    /// <summary>Choose γ per round to maximise expected goodput (docs/protocol.md §6), up to <see cref="Gamma"/>.</summary>
    public bool AdaptiveGamma { get; init; }

    /// <summary>Draft round r+1 while round r is in flight, assuming full acceptance.</summary>
    public bool Pipelining { get; init; }

    public int Vocab { get; init; } = 32_000;
    public int Devices { get; init; } = 1;
    public int TokensPerRequest { get; init; } = 200;
    public int RequestsPerDevice { get; init; } = 1;
    public int PromptTokens { get; init; } = 16;
    public ulong Seed { get; init; } = 1;

    /// <summary>Session ids are this long on the wire (the real ones: "demo-2a-0", a device's own naming).</summary>
    public int SessionIdLength { get; init; } = 12;

    /// <summary>A typical token id, for its MessagePack width (ids below 128 take one byte, below 65536 three).</summary>
    public int TypicalTokenId { get; init; } = -1;

    /// <summary>rsr: proposals sent per rejection (mean; fractional values mix the two neighbours).</summary>
    public double RsrProposals { get; init; } = 4;

    /// <summary>rsr: the chance that every proposal of a rejection fails and the device asks for more.</summary>
    public double RsrFollowUpRate { get; init; } = 0.02;

    /// <summary>Broker processing per message, milliseconds, each way (the hop between link and verifier).</summary>
    public double BrokerHopMs { get; init; } = 0.2;

    /// <summary>MQTT framing per message beyond the payload, bytes: uplink (topic, response topic, correlation, PUBACK).</summary>
    public int UplinkFramingBytes { get; init; } = 110;

    public int DownlinkFramingBytes { get; init; } = 60;

    public DeviceProfile Device { get; init; } = new();
    public LinkProfile Link { get; init; } = new();
    public VerifierProfile Verifier { get; init; } = new();
    public AcceptanceProfile Acceptance { get; init; } = new();

    /// <summary>Returns null when valid, else a one-line reason naming the setting.</summary>
    public string? Validate()
    {
        static bool Bad(double v) => double.IsNaN(v) || double.IsInfinity(v) || v < 0;
        if (Gamma is < 1 or > 64)
        {
            return $"gamma must be between 1 and 64, got {Gamma}";
        }

        if (Vocab is < 2 or > 1_048_576)
        {
            return $"vocab must be between 2 and 1048576, got {Vocab}";
        }

        if (Devices is < 1 or > 1_000_000 || RequestsPerDevice < 1 || TokensPerRequest is < 1 or > 10_000_000 || PromptTokens < 1)
        {
            return "devices (1-1000000), requests per device, tokens per request (1-10000000) and prompt tokens must be positive";
        }

        if (Bad(Device.DraftMsPerToken) || Bad(Device.DraftFixedMs))
        {
            return "device draft times must be finite and non-negative";
        }

        if (Bad(Link.RttMs) || Bad(Link.JitterMs) || Bad(Link.OutageEveryS) || Bad(Link.OutageS) || Bad(Link.ReconnectMs) || Bad(Link.MinRtoMs))
        {
            return "link rtt, jitter, outage and reconnect times must be finite and non-negative";
        }

        if (!(Link.UpMbps > 0) || !(Link.DownMbps > 0) || double.IsInfinity(Link.UpMbps) || double.IsInfinity(Link.DownMbps))
        {
            return $"link bandwidth must be positive, got {Link.UpMbps}/{Link.DownMbps} Mbps";
        }

        if (Link.Loss is < 0 or >= 1 || double.IsNaN(Link.Loss) || Link.SegmentBytes < 64)
        {
            return $"link loss must be in [0, 1), got {Link.Loss}";
        }

        if (Link.OutageEveryS > 0 && Link.OutageS >= Link.OutageEveryS)
        {
            return "an outage must be shorter than the time between outages";
        }

        if (Verifier.Count is < 1 or > 100_000 || Verifier.MaxBatch is < 1 or > 4096 || Bad(Verifier.BatchWaitMs))
        {
            return "verifier count (1-100000), max batch (1-4096) and batch wait (>= 0) are out of range";
        }

        if (Bad(Verifier.FixedMs) || Bad(Verifier.PerSequenceMs) || Bad(Verifier.PerTokenMs) || Bad(Verifier.CloudDraftMsPerToken))
        {
            return "verifier costs must be finite and non-negative";
        }

        if (Acceptance.ByPosition.Count == 0 || Acceptance.ByPosition.Any(a => a is < 0 or > 1 || double.IsNaN(a)) || Acceptance.BonusGuess is < 0 or > 1)
        {
            return "acceptance by position must hold at least one probability, each in [0, 1]";
        }

        if (RsrProposals is < 1 or > 4096 || RsrFollowUpRate is < 0 or >= 1 || Bad(BrokerHopMs) || UplinkFramingBytes < 0 || DownlinkFramingBytes < 0)
        {
            return "rsr proposals (1-4096), follow-up rate [0, 1), broker hop and framing must be in range";
        }

        if (SessionIdLength is < 1 or > 64 || TypicalTokenId >= Vocab)
        {
            return "session id length must be 1-64 and the typical token id below the vocabulary";
        }

        return null;
    }

    /// <summary>The token id used to size messages: <see cref="TypicalTokenId"/>, else one in the middle of the vocabulary.</summary>
    [JsonIgnore]
    public int TokenId => TypicalTokenId >= 0 ? TypicalTokenId : Vocab <= 256 ? 101 : Vocab / 2;
}

using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using IotDsd.Testbed.Reporting;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Sim.Calibration;
using IotDsd.Sim.Engine;
using IotDsd.Sim.Scenarios;
using IotDsd.Verifier.Hosting;
using EmulatedDirection = IotDsd.Messaging.LinkEmulation.LinkProfile;
using LinkProfile = IotDsd.Sim.Scenarios.LinkProfile;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Testbed.Validation;

/// <summary>
/// <c>iotdsd sim --validate</c>: for each link profile, a calibration run of the real system on loopback (embedded
/// broker, verifier, draft worker, shipped models), the same generation again through the link emulator, and the
/// simulator given the calibration and that link. Prints real and simulated tokens/s and bytes/token side by side.
/// </summary>
internal static class SimValidation
{
    /// <summary>The profiles: name, mode, RTT ms, jitter ms, up and down Mbps.</summary>
    public static readonly (string Name, DecodingMode Mode, double Rtt, double Jitter, double Up, double Down)[] Profiles =
    [
        ("wan-rsr", DecodingMode.Rsr, 20, 0, 10, 10),
        ("cellular-dssd", DecodingMode.Dssd, 50, 4, 2, 5),
        ("narrow-dsd", DecodingMode.Dsd, 10, 0, 1, 1),
        ("metro-greedy", DecodingMode.Greedy, 30, 2, 20, 20),
    ];

    private const int Tokens = 200;
    /// <summary>The prompt of every run.</summary>
    public const string Prompt = "The meaning of life is";

    /// <summary>Runs every profile, writing one line (or JSON object) per profile to <paramref name="output"/>; 0 when all are within 10 %.</summary>
    public static async Task<int> RunAsync(ILanguageModel draft, ILanguageModel target, int[] prompt, bool json, TextWriter output, CancellationToken ct)
    {
        await using var broker = await EmbeddedBroker.StartAsync().ConfigureAwait(false);
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        using var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = "validate-verifier" }, target, NullLogger<VerifierService>.Instance);
        await verifier.StartAsync(ct).ConfigureAwait(false);
        await verifier.Ready.WaitAsync(ct).ConfigureAwait(false);
        var rows = new List<ValidationRow>();
        try
        {
            await using var local = await WorkerAsync(address, "validate-local", draft, ct).ConfigureAwait(false);
            await local.GenerateAsync(prompt, Settings(DecodingMode.Rsr, "warm-up", 50), null, ct).ConfigureAwait(false);
            if (!json)
            {
                output.WriteLine($"{"profile",-14} {"mode",-6} {"link",-28} | {"real tok/s",10} {"sim tok/s",9} {"diff",6} | {"real B/tok",10} {"sim B/tok",9} {"diff",6} | {"late",5}");
            }

            foreach (var p in Profiles)
            {
                var settings = Settings(p.Mode, "validate-" + p.Name, Tokens);
                var calibrationRun = await local.GenerateAsync(prompt, settings, null, ct).ConfigureAwait(false);
                GenerationReport real;
                (double Up, double Down) late;
                await using (var link = new LinkEmulator(new LinkEmulatorOptions
                {
                    UpstreamHost = "127.0.0.1",
                    UpstreamPort = broker.Port,
                    Up = Direction(p.Rtt, p.Jitter, p.Up),
                    Down = Direction(p.Rtt, p.Jitter, p.Down),
                }))
                {
                    await link.StartAsync(ct).ConfigureAwait(false);
                    await using var remote = await WorkerAsync(new BrokerAddress("127.0.0.1", link.Port), "validate-" + p.Name, draft, ct).ConfigureAwait(false);
                    real = await remote.GenerateAsync(prompt, settings, null, ct).ConfigureAwait(false);
                    late = link.MeanLateMs;
                }

                var calibration = Calibrator.FromRun(CalibrationWriter.Facts([calibrationRun], "validate", target.VocabSize, prompt.Length));
                var scenario = Calibrator.ToScenario(calibration) with
                {
                    RequestsPerDevice = 50,
                    // The link as the emulator delivered it: its configured delay plus its own measured lateness.
                    Link = new LinkProfile { RttMs = p.Rtt + late.Up + late.Down, JitterMs = p.Jitter, UpMbps = p.Up, DownMbps = p.Down },
                };
                var sim = Simulator.Run(scenario, ct);
                var row = ValidationRow.Of(p.Name, p.Mode.Name(), scenario.Link with { RttMs = p.Rtt }, real, sim) with { EmulatorLateMs = Math.Round(late.Up + late.Down, 3) };
                rows.Add(row);
                output.WriteLine(json ? JsonSerializer.Serialize(row) : row.ToText());
            }
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }

        var ok = rows.All(r => r.WithinTenPercent);
        if (!json)
        {
            output.WriteLine(ok ? "all profiles within 10%" : "some profiles differ by more than 10%");
        }

        return ok ? 0 : 1;
    }

    /// <summary>
    /// One direction of the simulator's link model (RTT/2 ± jitter, serialised at the bandwidth) as the link emulator
    /// draws it: a fixed delay of RTT/2 − jitter plus a uniform 0 … 2 × jitter.
    /// </summary>
    internal static EmulatedDirection Direction(double rttMs, double jitterMs, double mbps) => new()
    {
        Delay = TimeSpan.FromMilliseconds(Math.Max(0, (rttMs / 2) - jitterMs)),
        Jitter = TimeSpan.FromMilliseconds(2 * jitterMs),
        BytesPerSecond = (long)(mbps * 1_000_000 / 8),
    };

    private static SessionSettings Settings(DecodingMode mode, string session, int tokens) => new()
    {
        SessionId = session,
        Mode = mode,
        Sampling = mode == DecodingMode.Greedy ? SamplingParams.Greedy : new SamplingParams(0.7f, 0, 1f),
        Seed = 7,
        MaxTokens = tokens,
        Gamma = 4,
    };

    private static async Task<DraftWorker> WorkerAsync(BrokerAddress address, string deviceId, ILanguageModel draft, CancellationToken ct)
    {
        var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = deviceId, VerifierId = "validate-verifier", Sequential = true }, draft, NullLogger.Instance);
        await worker.StartAsync(ct).ConfigureAwait(false);
        return worker;
    }
}

/// <summary>One profile's real and simulated figures.</summary>
internal sealed record ValidationRow
{
    [JsonPropertyName("profile")] public required string Profile { get; init; }
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("rtt_ms")] public double RttMs { get; init; }
    [JsonPropertyName("jitter_ms")] public double JitterMs { get; init; }
    [JsonPropertyName("up_mbps")] public double UpMbps { get; init; }
    [JsonPropertyName("down_mbps")] public double DownMbps { get; init; }
    [JsonPropertyName("real_tokens_per_s")] public double RealTokensPerSecond { get; init; }
    [JsonPropertyName("sim_tokens_per_s")] public double SimTokensPerSecond { get; init; }
    [JsonPropertyName("tokens_per_s_error")] public double TokensPerSecondError { get; init; }
    [JsonPropertyName("real_bytes_per_token")] public double RealBytesPerToken { get; init; }
    [JsonPropertyName("sim_bytes_per_token")] public double SimBytesPerToken { get; init; }
    [JsonPropertyName("bytes_per_token_error")] public double BytesPerTokenError { get; init; }
    [JsonPropertyName("emulator_late_ms")] public double EmulatorLateMs { get; init; }
    [JsonPropertyName("within_10_percent")] public bool WithinTenPercent { get; init; }

    public static ValidationRow Of(string profile, string mode, LinkProfile link, GenerationReport real, SimResult sim)
    {
        var realBytes = (double)(real.UplinkPayloadBytes + real.DownlinkPayloadBytes) / real.Tokens.Count;
        var tpsError = (sim.TokensPerSecond - real.TokensPerSecond) / real.TokensPerSecond;
        var bytesError = (sim.BytesPerToken - realBytes) / realBytes;
        return new ValidationRow
        {
            Profile = profile,
            Mode = mode,
            RttMs = link.RttMs,
            JitterMs = link.JitterMs,
            UpMbps = link.UpMbps,
            DownMbps = link.DownMbps,
            RealTokensPerSecond = Math.Round(real.TokensPerSecond, 2),
            SimTokensPerSecond = Math.Round(sim.TokensPerSecond, 2),
            TokensPerSecondError = Math.Round(tpsError, 4),
            RealBytesPerToken = Math.Round(realBytes, 2),
            SimBytesPerToken = Math.Round(sim.BytesPerToken, 2),
            BytesPerTokenError = Math.Round(bytesError, 4),
            WithinTenPercent = Math.Abs(tpsError) <= 0.10 && Math.Abs(bytesError) <= 0.10,
        };
    }

    public string ToText() => string.Create(CultureInfo.InvariantCulture,
        $"{Profile,-14} {Mode,-6} {$"{RttMs}±{JitterMs} ms {UpMbps}/{DownMbps} Mbps",-28} | {RealTokensPerSecond,10:0.0} {SimTokensPerSecond,9:0.0} {TokensPerSecondError,6:+0.0%;-0.0%} | {RealBytesPerToken,10:0.0} {SimBytesPerToken,9:0.0} {BytesPerTokenError,6:+0.0%;-0.0%} | {EmulatorLateMs,5:0.0}");
}

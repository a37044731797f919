using IotDsd.Inference.Models;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using IotDsd.Sim.Calibration;
using IotDsd.Sim.Engine;
using IotDsd.Sim.Plots;
using IotDsd.Sim.Reproductions;
using IotDsd.Sim.Scenarios;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd sim</c>: the discrete-event simulator. One scenario (options, a scenario file or a calibration file from a
/// real run), the published experiments (<c>--reproduce</c>), or the check against the real system (<c>--validate</c>).
/// </summary>
internal static class SimCommand
{
    private static readonly Option<string?> ScenarioPath = new("--scenario") { Description = "Scenario JSON file; every field, its default and meaning: src/IotDsd.Sim/Scenarios/example.json." };
    private static readonly Option<string?> CalibrationPath = new("--calibration") { Description = "Calibration file written by demo/edge --calibration-out: the base scenario." };
    private static readonly Option<string?> Reproduce = new("--reproduce") { Description = "dssd-table, grid, rtt, fleet or all." };
    private static readonly Option<bool> Validate = new("--validate") { Description = "Run the real system through an emulated link on four profiles and print it beside the simulator." };
    private static readonly Option<bool> Json = new("--json") { Description = "One JSON object per result line on stdout." };
    private static readonly Option<string?> Plot = new("--plot") { Description = "Write SVG charts into this directory." };
    private static readonly Option<string?> Mode = new("--mode") { Description = "cloud, cloud-sd, dsd, dssd, rsr or greedy." };
    private static readonly Option<int?> Gamma = new("--gamma") { Description = "Draft tokens per round (the maximum with --adaptive-gamma)." };
    private static readonly Option<bool> Adaptive = new("--adaptive-gamma") { Description = "Choose γ per round for goodput (docs/protocol.md §6)." };
    private static readonly Option<bool> Pipelining = new("--pipelining") { Description = "Draft the next round while this one is in flight." };
    private static readonly Option<int?> Vocab = new("--vocab") { Description = "Vocabulary size." };
    private static readonly Option<int?> Devices = new("--devices") { Description = "Devices in the fleet." };
    private static readonly Option<int?> Tokens = new("--tokens") { Description = "Tokens per request." };
    private static readonly Option<int?> Requests = new("--requests") { Description = "Requests per device, one after another." };
    private static readonly Option<double?> Rtt = new("--rtt-ms") { Description = "Link round-trip time." };
    private static readonly Option<double?> Jitter = new("--jitter-ms") { Description = "One-way delay jitter (±)." };
    private static readonly Option<double?> Mbps = new("--mbps") { Description = "Link bandwidth both ways." };
    private static readonly Option<double?> UpMbps = new("--up-mbps") { Description = "Uplink bandwidth." };
    private static readonly Option<double?> DownMbps = new("--down-mbps") { Description = "Downlink bandwidth." };
    private static readonly Option<double?> Loss = new("--loss") { Description = "Packet loss probability." };
    private static readonly Option<double?> OutageEvery = new("--outage-every-s") { Description = "Seconds between link outages." };
    private static readonly Option<double?> Outage = new("--outage-s") { Description = "Length of each outage, seconds." };
    private static readonly Option<double?> DraftMs = new("--draft-ms") { Description = "Device draft time per token." };
    private static readonly Option<double?> VerifyMs = new("--verify-ms") { Description = "Verifier forward pass, fixed part." };
    private static readonly Option<double?> VerifyTokenMs = new("--verify-token-ms") { Description = "Verifier forward pass, per token in the batch." };
    private static readonly Option<int?> Verifiers = new("--verifiers") { Description = "Verifiers (devices are spread over them)." };
    private static readonly Option<int?> MaxBatch = new("--max-batch") { Description = "Most rounds in one forward pass." };
    private static readonly Option<string?> Acceptance = new("--acceptance") { Description = "Acceptance by position, comma-separated (the last repeats)." };
    private static readonly Option<ulong?> Seed = new("--seed") { Description = "Simulation seed." };

    public static Command Create()
    {
        var command = new Command("sim", "Simulate devices, links, broker and verifiers; reproduce published results; validate against the real system.")
        {
            ScenarioPath, CalibrationPath, Reproduce, Validate, Json, Plot, Mode, Gamma, Adaptive, Pipelining, Vocab, Devices, Tokens, Requests,
            Rtt, Jitter, Mbps, UpMbps, DownMbps, Loss, OutageEvery, Outage, DraftMs, VerifyMs, VerifyTokenMs, Verifiers, MaxBatch, Acceptance, Seed,
        };
        command.SetAction((result, ct) => RunAsync(result, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult result, CancellationToken ct)
    {
        var json = result.GetValue(Json);
        if (result.GetValue(Validate))
        {
            using var models = ModelPair.Load(null, null, needDraft: true, pair: ModelPair.NgramPair);
            return await SimValidation.RunAsync(models.Draft!, models.Target, models.Tokenizer.Encode(SimValidation.Prompt), json, Console.Out, ct).ConfigureAwait(false);
        }

        var scenario = BuildScenario(result);
        var plot = result.GetValue(Plot);
        switch (result.GetValue(Reproduce))
        {
            case null:
                var single = Simulator.Run(scenario, ct);
                Console.Out.WriteLine(json ? JsonSerializer.Serialize(single) : SimText.Summary(single));
                if (plot is not null)
                {
                    Wrote(SimPlots.Write(plot, Sweeps.Rtt(scenario, ct), Sweeps.Fleet(scenario, ct)));
                }

                return 0;
            case "dssd-table":
                SimText.Table(DssdTable.Rows(), json, Console.Out);
                return 0;
            case "grid":
                SimText.Results(Sweeps.Grid(scenario, ct), json, Console.Out);
                return 0;
            case "rtt":
                var rtt = Sweeps.Rtt(scenario, ct);
                SimText.Results(rtt, json, Console.Out);
                PlotIf(plot, rtt, null);
                return 0;
            case "fleet":
                var fleet = Sweeps.Fleet(scenario, ct);
                SimText.Results(fleet, json, Console.Out);
                PlotIf(plot, null, fleet);
                return 0;
            case "all":
                SimText.Table(DssdTable.Rows(), json, Console.Out);
                SimText.Results(Sweeps.Grid(scenario, ct), json, Console.Out);
                var all = (Rtt: Sweeps.Rtt(scenario, ct), Fleet: Sweeps.Fleet(scenario, ct));
                SimText.Results(all.Fleet, json, Console.Out);
                PlotIf(plot, all.Rtt, all.Fleet);
                return 0;
            case var other:
                throw new CliError($"--reproduce must be dssd-table, grid, rtt, fleet or all, got '{other}'");
        }
    }

    private static void PlotIf(string? directory, IReadOnlyList<SimResult>? rtt, IReadOnlyList<SimResult>? fleet)
    {
        if (directory is not null)
        {
            Wrote(SimPlots.Write(directory, rtt, fleet));
        }
    }

    private static void Wrote(IReadOnlyList<string> files)
    {
        foreach (var file in files)
        {
            Console.Error.WriteLine($"wrote {file}");
        }
    }

    /// <summary>The base (baseline, scenario file or calibration) with every option given on the command line applied.</summary>
    private static Scenario BuildScenario(ParseResult r)
    {
        Scenario s;
        try
        {
            s = r.GetValue(ScenarioPath) is { } path ? ScenarioFile.Load(path)
                : r.GetValue(CalibrationPath) is { } cal ? Calibrator.ToScenario(Calibration.Load(cal))
                : Baseline.Scenario;
        }
        catch (FormatException ex)
        {
            throw new CliError(ex.Message);
        }

        if (r.GetValue(Mode) is { } modeText)
        {
            s = SimModes.TryParse(modeText, out var mode) ? s with { Mode = mode }
                : throw new CliError($"--mode must be one of {string.Join(", ", SimModes.All.Select(m => m.Name()))}, got '{modeText}'");
        }

        var link = s.Link with
        {
            RttMs = r.GetValue(Rtt) ?? s.Link.RttMs,
            JitterMs = r.GetValue(Jitter) ?? s.Link.JitterMs,
            UpMbps = r.GetValue(UpMbps) ?? r.GetValue(Mbps) ?? s.Link.UpMbps,
            DownMbps = r.GetValue(DownMbps) ?? r.GetValue(Mbps) ?? s.Link.DownMbps,
            Loss = r.GetValue(Loss) ?? s.Link.Loss,
            OutageEveryS = r.GetValue(OutageEvery) ?? s.Link.OutageEveryS,
            OutageS = r.GetValue(Outage) ?? s.Link.OutageS,
        };
        s = s with
        {
            Gamma = r.GetValue(Gamma) ?? s.Gamma,
            AdaptiveGamma = s.AdaptiveGamma || r.GetValue(Adaptive),
            Pipelining = s.Pipelining || r.GetValue(Pipelining),
            Vocab = r.GetValue(Vocab) ?? s.Vocab,
            Devices = r.GetValue(Devices) ?? s.Devices,
            TokensPerRequest = r.GetValue(Tokens) ?? s.TokensPerRequest,
            RequestsPerDevice = r.GetValue(Requests) ?? s.RequestsPerDevice,
            Seed = r.GetValue(Seed) ?? s.Seed,
            Link = link,
            Device = s.Device with { DraftMsPerToken = r.GetValue(DraftMs) ?? s.Device.DraftMsPerToken },
            Verifier = s.Verifier with
            {
                FixedMs = r.GetValue(VerifyMs) ?? s.Verifier.FixedMs,
                PerTokenMs = r.GetValue(VerifyTokenMs) ?? s.Verifier.PerTokenMs,
                Count = r.GetValue(Verifiers) ?? s.Verifier.Count,
                MaxBatch = r.GetValue(MaxBatch) ?? s.Verifier.MaxBatch,
            },
            Acceptance = r.GetValue(Acceptance) is { } text ? s.Acceptance with { ByPosition = ParseList(text) } : s.Acceptance,
        };
        return s.Validate() is { } bad ? throw new CliError(bad) : s;
    }

    private static List<double> ParseList(string text) =>
        [.. ListArgument.Doubles(text, "--acceptance", "probabilities in [0, 1]", v => v is >= 0 and <= 1)];
}

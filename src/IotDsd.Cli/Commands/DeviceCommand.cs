using IotDsd.Inference.Models;
using System.CommandLine;
using System.Globalization;
using IotDsd.Hosting;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd device</c>: the draft worker as a long-running service (systemd <c>Type=notify</c> with a watchdog):
/// stays connected, publishes diagnostics, answers diagnostic commands, and runs generations from a prompt file.
/// Settings are layered: config file, then <c>IOTDSD_*</c> environment variables, then flags.
/// </summary>
internal static class DeviceCommand
{
    public static Command Create()
    {
        var (config, flags) = SettingOptions.Create(Settings.Device);
        var check = new Option<bool>("--check-config") { Description = "Validate the settings, print them (secrets redacted) with their sources, and exit." };
        var command = new Command("device", "Run the draft worker as a device service: connected, diagnosable over MQTT, generating from a prompt file.") { config, check };
        foreach (var option in flags.Values)
        {
            command.Add(option);
        }

        command.SetAction(async (result, ct) =>
        {
            var layered = SettingOptions.Build(result, config, flags, Settings.Device);
            var common = ServiceHost.ReadCommon(layered);
            var (edge, service, draftDir) = Read(layered, common);
            var providers = ModelSettings.Read(layered, Settings.Device);
            layered.ThrowIfInvalid();
            if (result.GetValue(check))
            {
                ConfigPrinter.Print(layered);
                return 0;
            }

            using var models = ModelPair.Load(draftDir, null, true, false, CommonOptions.Providers(providers));
            service = service with
            {
                Generation = models.WithStops(service.Generation),
                Bos = models.Specials.AddBos ? models.Specials.Bos : null,
            };
            var builder = ServiceHost.CreateBuilder(common.LogLevel);
            var metrics = new EdgeMetrics();
            builder.Services.AddSingleton(sp => new DraftWorker(edge, models.Draft!, sp.GetRequiredService<ILogger<DraftWorker>>(), sp.GetRequiredService<TimeProvider>(), metrics));
            builder.Services.AddSingleton(sp => new EdgeService(service, sp.GetRequiredService<DraftWorker>(), models.Tokenizer, metrics, sp.GetRequiredService<ILogger<EdgeService>>(), sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddHostedService(sp => sp.GetRequiredService<EdgeService>());
            ServiceHost.AddOperations(
                builder,
                common,
                sp => new EdgeDiagnostics(edge, sp.GetRequiredService<DraftWorker>(), () => sp.GetRequiredService<EdgeService>().StartupTime, metrics, models.Draft!.Name, layered.Entries, sp.GetRequiredService<TimeProvider>()),
                sp => sp.GetRequiredService<DraftWorker>().Connection?.IsConnected ?? false);
            using var host = builder.Build();
            // RunAsync disposes the host's services when it returns: take the service first.
            var edgeService = host.Services.GetRequiredService<EdgeService>();
            await ServiceHost.RunAsync(host, ct).ConfigureAwait(false);
            if (edgeService.ExecuteTask is { IsFaulted: true } failed)
            {
                throw new CliError(failed.Exception!.GetBaseException().Message);
            }

            return 0;
        });
        return command;
    }

    private static (EdgeOptions Edge, EdgeServiceOptions Service, string? DraftDir) Read(LayeredConfiguration c, ServiceSettings common)
    {
        var deviceId = c.String(Settings.DeviceId, Environment.MachineName.ToLowerInvariant())!;
        if (!TopicScheme.IsValidId(deviceId))
        {
            c.Problem(Settings.DeviceId, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
        }

        var verifier = c.String(Settings.PinVerifier);
        if (verifier is not null && !TopicScheme.IsValidId(verifier))
        {
            c.Problem(Settings.PinVerifier, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
        }

        // The edge keeps its generations in progress and its presence counters in the service's state directory, so a
        // restarted service resumes the generation it was killed in and its retained status counts boots on.
        var stateDir = c.String(Settings.StateDirectory, DefaultStateDirectory())!;
        var level = LevelOption.Parse(c.String(Settings.Level), bad => c.Problem(Settings.Level, bad));
        var edge = new EdgeOptions
        {
            DeviceId = deviceId,
            StateDirectory = stateDir,
            PinnedLevel = level,
            Sequential = c.Bool(Settings.Sequential),
            AdaptGammaInSampling = level is > DegradationLevel.Normal, // asking for a rung below normal is asking for its γ
            VerifierId = verifier,
            Broker = common.Broker,
            Username = common.Username,
            Password = common.Password,
            Tls = common.Tls,
            RequestTimeout = c.Millis(Settings.RequestTimeout, 1, 600_000),
            MaxAttempts = c.Int(Settings.MaxAttempts, 1, 1000),
            DiscoveryTimeout = c.Millis(Settings.DiscoveryTimeout, 0, 3_600_000),
        };
        var draftDir = c.String(Settings.DraftModel);
        var prompts = ReadPrompts(c, c.String(Settings.PromptFile));
        var modeText = c.String(Settings.Mode);
        var sampling = new SamplingParams((float)c.Double(Settings.Temperature, 0, 100), c.Int(Settings.TopK, 0, 1_000_000), (float)c.Double(Settings.TopP, 0, 1));
        DecodingMode mode = sampling.IsGreedy ? DecodingMode.Greedy : DecodingMode.Rsr;
        if (modeText is not null && !DecodingModes.TryParse(modeText, out mode))
        {
            c.Problem(Settings.Mode, "must be greedy, dsd, dssd or rsr");
        }

        var generation = new SessionSettings
        {
            SessionId = "template",
            Mode = mode,
            Sampling = sampling,
            Seed = c.Parsed<ulong>(Settings.Seed, t => ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? (s, null) : (0, "must be a whole number from 0 to 2^64-1"), Settings.Seed.Default),
            MaxTokens = c.Int(Settings.MaxTokens, 1, 1_000_000),
            Gamma = c.Int(Settings.Gamma, 1, 64),
        };
        if (generation.Validate() is { } bad)
        {
            // The session's own check names the parameter; attribute it to the setting it mentions.
            var culprit = new[] { Settings.Mode, Settings.Temperature, Settings.TopK, Settings.TopP, Settings.Gamma, Settings.MaxTokens }
                .FirstOrDefault(s => bad.Contains(s.Key[(s.Key.IndexOf(':', StringComparison.Ordinal) + 1)..], StringComparison.OrdinalIgnoreCase)) ?? Settings.Mode;
            c.Problem(culprit, bad);
        }

        var service = new EdgeServiceOptions
        {
            StateDirectory = stateDir,
            Prompts = prompts,
            JobInterval = c.Millis(Settings.JobInterval, 0, 86_400_000),
            MaxJobs = c.Int(Settings.MaxJobs, 0, int.MaxValue),
            Generation = generation,
        };
        return (edge, service, draftDir);
    }

    private static List<string> ReadPrompts(LayeredConfiguration c, string? file)
    {
        if (file is null)
        {
            return [];
        }

        try
        {
            var prompts = File.ReadAllLines(file).Where(l => l.Trim().Length > 0).ToList();
            if (prompts.Count == 0)
            {
                c.Problem(Settings.PromptFile, "has no prompts (one per line)");
            }

            return prompts;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            c.Problem(Settings.PromptFile, $"cannot be read: {ex.Message.TrimEnd('.')}");
            return [];
        }
    }

    /// <summary>systemd's <c>StateDirectory=</c> (first entry of <c>$STATE_DIRECTORY</c>), else the XDG state home.</summary>
    private static string DefaultStateDirectory()
    {
        if (Environment.GetEnvironmentVariable("STATE_DIRECTORY") is { Length: > 0 } systemd)
        {
            return systemd.Split(':')[0];
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        return Path.Combine(string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state") : xdg, "iotdsd");
    }
}

/// <summary>Prints the effective settings with their sources, secrets redacted.</summary>
internal static class ConfigPrinter
{
    public static void Print(LayeredConfiguration config)
    {
        var entries = config.Entries.Select(e => e.Redact()).ToList();
        var width = entries.Max(e => e.Key.Length);
        Console.Out.WriteLine($"# effective settings{(config.File is null ? "" : $" (config file {config.File})")}");
        foreach (var e in entries)
        {
            Console.Out.WriteLine($"{e.Key.PadRight(width)}  {e.Value ?? "(unset)"}  [{e.Source}]");
        }
    }
}

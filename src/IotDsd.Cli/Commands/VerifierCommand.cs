using IotDsd.Inference.Models;
using System.CommandLine;
using IotDsd.Hosting;
using IotDsd.Contracts.Topics;
using IotDsd.Core.Models;
using IotDsd.Messaging.Diagnostics;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd verifier</c>: the verifier role against any MQTT 5 broker, until interrupted; a systemd
/// <c>Type=notify</c> service with a watchdog. Settings are layered: config file, <c>IOTDSD_*</c> environment
/// variables, flags.
/// </summary>
internal static class VerifierCommand
{
    public static Command Create()
    {
        var (config, flags) = SettingOptions.Create(Settings.Verifier);
        var check = new Option<bool>("--check-config") { Description = "Validate the settings, print them (secrets redacted) with their sources, and exit." };
        var verbose = new Option<bool>("--verbose") { Description = "Same as --log-level Information." };
        var command = new Command("verifier", "Run a verifier: verifies draft rounds from devices with the target model.") { config, check, verbose };
        foreach (var option in flags.Values)
        {
            command.Add(option);
        }

        command.SetAction(async (result, ct) =>
        {
            var layered = SettingOptions.Build(result, config, flags, Settings.Verifier);
            var common = ServiceHost.ReadCommon(layered);
            var id = layered.String(Settings.VerifierId, Settings.VerifierId.Default)!;
            if (!TopicScheme.IsValidId(id))
            {
                layered.Problem(Settings.VerifierId, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
            }

            var options = new VerifierOptions
            {
                VerifierId = id,
                Broker = common.Broker,
                Username = common.Username,
                Password = common.Password,
                Tls = common.Tls,
                MaxBatch = layered.Int(Settings.MaxBatch, 1, 4096),
                BatchWait = layered.Millis(Settings.BatchWait, 0, 1000),
                SessionIdleTimeout = TimeSpan.FromSeconds(layered.Int(Settings.SessionIdle, 1, 7 * 86_400)),
                MaxSessions = layered.Int(Settings.MaxSessions, 1, 10_000_000),
                StateDirectory = layered.String(Settings.VerifierStateDirectory, Environment.GetEnvironmentVariable("STATE_DIRECTORY")?.Split(':')[0]) is { Length: > 0 } stateDir ? stateDir : null,
                CapacityWeight = layered.Double(Settings.CapacityWeight, 0.001, 1000),
                LoadRefresh = layered.Millis(Settings.LoadRefresh, 100, 60_000),
                WillDelay = TimeSpan.FromSeconds(layered.Int(Settings.WillDelay, 0, 3600)),
                Limits = new() { KvBudgetBytes = layered.Int(Settings.KvBudgetMb, 0, 16 << 20) is > 0 and var mb ? (long)mb << 20 : null },
            };
            var targetDir = layered.String(Settings.TargetModel);
            var providers = ModelSettings.Read(layered, Settings.Verifier);
            layered.ThrowIfInvalid();
            if (result.GetValue(check))
            {
                ConfigPrinter.Print(layered);
                return 0;
            }

            using var models = ModelPair.Load(null, targetDir, false, true, CommonOptions.Providers(providers));
            var builder = ServiceHost.CreateBuilder(result.GetValue(verbose) ? LogLevel.Information : common.LogLevel, result.GetValue(verbose));
            builder.Services.AddSingleton(options);
            builder.Services.AddSingleton<ILanguageModel>(models.Target);
            builder.Services.AddSingleton<VerifierService>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<VerifierService>());
            builder.Services.AddSingleton(sp => new VerifierDiagnostics(sp.GetRequiredService<VerifierService>(), models.Target.Name, layered.Entries, sp.GetRequiredService<TimeProvider>()));

            // Hosted services start in order: "ready" goes to systemd only once the verifier is connected and subscribed.
            builder.Services.AddHostedService(sp => new StartupGate(async gateCt =>
            {
                await sp.GetRequiredService<VerifierService>().Ready.WaitAsync(gateCt).ConfigureAwait(false);
                sp.GetRequiredService<VerifierDiagnostics>().StartupTime = ProcessClock.SinceStart(sp.GetRequiredService<TimeProvider>());
                // Said once it is true: a verifier that cannot reach its broker prints only its error.
                await Console.Error.WriteLineAsync($"iotdsd verifier {options.VerifierId} on {options.Broker} with {models.Target.Name}. Ctrl+C stops it.").ConfigureAwait(false);
            }));
            ServiceHost.AddOperations(builder, common, sp => sp.GetRequiredService<VerifierDiagnostics>(), sp => sp.GetRequiredService<VerifierService>().Connection?.IsConnected ?? false);
            using var host = builder.Build();
            // RunAsync disposes the host's services when it returns: take the service first.
            var service = host.Services.GetRequiredService<VerifierService>();
            await ServiceHost.RunAsync(host, ct).ConfigureAwait(false);
            if (service.ExecuteTask is { IsFaulted: true } failed)
            {
                // A fatal error stops the host; a non-zero exit lets systemd restart the process.
                throw new CliError(failed.Exception!.GetBaseException().Message);
            }

            return 0;
        });
        return command;
    }
}

/// <summary>
/// A hosted service whose start waits for a condition, holding back the host's "started" (and systemd's READY). A stop
/// requested while it waits (SIGTERM during start-up) ends the wait quietly: the host then stops as after any start.
/// </summary>
internal sealed class StartupGate(Func<CancellationToken, Task> until) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await until(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

using System.CommandLine;
using IotDsd.Core.Models;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd verifier</c>: the verifier role against any MQTT 5 broker, until interrupted.</summary>
internal static class VerifierCommand
{
    public static Command Create(CommonOptions common)
    {
        var id = new Option<string>("--id") { Description = "Verifier id (a topic level).", DefaultValueFactory = _ => "verifier-1" };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most rounds per forward pass.", DefaultValueFactory = _ => 32 };
        var batchWait = new Option<double>("--batch-wait-ms") { Description = "Longest a round waits for a batch to fill.", DefaultValueFactory = _ => 1.0 };
        var command = new Command("verifier", "Run a verifier: verifies draft rounds from devices with the target model.") { id, maxBatch, batchWait };
        common.AddBroker(command);
        command.Add(common.Target);
        command.Add(common.Verbose);
        command.SetAction(async (result, ct) =>
        {
            var options = new VerifierOptions
            {
                VerifierId = result.GetValue(id)!,
                Broker = common.ParseBroker(result),
                Username = result.GetValue(common.Username),
                Password = common.PasswordOf(result),
                MaxBatch = result.GetValue(maxBatch),
                BatchWait = TimeSpan.FromMilliseconds(result.GetValue(batchWait)),
            };
            if (options.Validate() is { } bad)
            {
                throw new CliError(bad);
            }

            using var models = ModelPair.Load(null, result.GetValue(common.Target), needDraft: false);
            var builder = Host.CreateApplicationBuilder();
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.Logging.SetMinimumLevel(result.GetValue(common.Verbose) ? LogLevel.Information : LogLevel.Warning);
            builder.Services.AddSingleton(options);
            builder.Services.AddSingleton<ILanguageModel>(models.Target);
            builder.Services.AddSingleton(TimeProvider.System);
            builder.Services.AddSingleton<VerifierService>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<VerifierService>());
            using var host = builder.Build();
            await Console.Error.WriteLineAsync($"iotdsd verifier {options.VerifierId} on {options.Broker} with {models.Target.Name}. Ctrl+C stops it.").ConfigureAwait(false);
            await host.RunAsync(ct).ConfigureAwait(false);
            var service = host.Services.GetRequiredService<VerifierService>();
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

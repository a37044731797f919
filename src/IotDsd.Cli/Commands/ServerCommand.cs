using IotDsd.Inference.Models;
using System.CommandLine;
using IotDsd.Verifier.Baseline;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd server</c>: the server-only baseline against any MQTT 5 broker, until interrupted. It generates each
/// device's text itself with the target model and streams the tokens down — what a fleet runs without IotDsd.
/// </summary>
internal static class ServerCommand
{
    public static Command Create(CommonOptions common)
    {
        var id = new Option<string>("--id") { Description = "Server id (a topic level).", DefaultValueFactory = _ => "server-1" };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most streams advanced per forward pass.", DefaultValueFactory = _ => 32 };
        var command = new Command("server", "Run the server-only baseline: generates each device's text with the target model and streams it down.") { id, maxBatch };
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
            };
            if (options.Validate() is { } bad)
            {
                throw new CliError(bad.Replace("verifier id", "--id", StringComparison.Ordinal).Replace("max batch", "--max-batch", StringComparison.Ordinal));
            }

            using var models = ModelPair.Load(null, result.GetValue(common.Target), needDraft: false);
            using var logging = Runtime.Logging(result.GetValue(common.Verbose));
            using var server = new BaselineServer(options, models.Target, logging.CreateLogger<BaselineServer>());
            await server.StartAsync(ct).ConfigureAwait(false);
            await server.Ready.WaitAsync(ct).ConfigureAwait(false);
            await Console.Error.WriteLineAsync($"iotdsd server {options.VerifierId} on {options.Broker} with {models.Target.Name}. Ctrl+C stops it.").ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

            await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
            return server.ExecuteTask is { IsFaulted: true } failed ? throw new CliError(failed.Exception!.GetBaseException().Message) : 0;
        });
        return command;
    }
}

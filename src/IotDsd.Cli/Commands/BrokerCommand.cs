using System.CommandLine;
using System.Net;
using IotDsd.Messaging.Broker;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd broker</c>: the embedded MQTT 5 broker alone.</summary>
internal static class BrokerCommand
{
    public static Command Create()
    {
        var port = new Option<int>("--port") { Description = "TCP port.", DefaultValueFactory = _ => 1883 };
        var bind = new Option<string>("--bind") { Description = "Address to listen on (loopback by default; the embedded broker has no TLS or authentication).", DefaultValueFactory = _ => "127.0.0.1" };
        var command = new Command("broker", "Run the embedded MQTT 5 broker (MQTTnet) until interrupted.") { port, bind };
        command.SetAction(async (result, ct) =>
        {
            var p = result.GetValue(port);
            if (p is < 1 or > 65535)
            {
                throw new CliError($"--port must be between 1 and 65535, got {p}");
            }

            if (!IPAddress.TryParse(result.GetValue(bind), out var address))
            {
                throw new CliError($"--bind must be an IP address, got '{result.GetValue(bind)}'");
            }

            await using var broker = await CliErrors.ListeningAsync("--port", $"{address}:{p}", () => EmbeddedBroker.StartAsync(p, address)).ConfigureAwait(false);
            await Console.Error.WriteLineAsync($"iotdsd broker listening on {address}:{broker.Port} (MQTT 5, no TLS). Ctrl+C stops it.").ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

            return 0;
        });
        return command;
    }
}

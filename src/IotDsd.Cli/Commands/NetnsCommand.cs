using System.CommandLine;
using System.Net;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd netns -- COMMAND ARGS</c>: runs a command in a fresh network namespace joined to this host by a veth pair,
/// and cuts and restores that real link (as root). <c>--upstream</c> forwards the host's end of the link to a broker
/// that listens elsewhere (loopback, say); <c>{broker}</c> and <c>{host}</c> in the command are replaced by the
/// addresses the namespace must use. Takes <c>cut</c>, <c>restore</c>, <c>rate UP_BPS DOWN_BPS</c> and <c>status</c>
/// on stdin, and can cut on a seeded random schedule (<c>--cuts</c>). Exits with the command's exit code and removes
/// the namespace.
/// </summary>
internal static class NetnsCommand
{
    public static Command Create()
    {
        var upstream = new Option<string?>("--upstream") { Description = "Forward HOST_ADDRESS:PORT on the host's end of the link to this broker (HOST:PORT); {broker} in the command becomes that address." };
        var port = new Option<int>("--port") { Description = "Port of the forwarder on the host's end (0: the upstream's port)." };
        var upBps = new Option<long>("--up-bps") { Description = "Namespace → host bandwidth in bytes/s, a real tbf qdisc (0: unlimited)." };
        var downBps = new Option<long>("--down-bps") { Description = "Host → namespace bandwidth in bytes/s (0: unlimited)." };
        var cutSchedule = new CutScheduleOptions("Seed of the cut schedule.");
        var verbose = new Option<bool>("--verbose") { Description = "Log setup, cuts and restores." };
        var run = new Argument<string[]>("command") { Description = "The command to run inside the namespace (after --).", Arity = ArgumentArity.OneOrMore };
        var command = new Command("netns", "Run a command behind a real link (network namespace and veth pair, root only) and cut or limit that link.")
        {
            upstream, port, upBps, downBps, verbose, run,
        };
        cutSchedule.AddTo(command);
        command.SetAction(async (result, ct) =>
        {
            var target = result.GetValue(upstream) is { } text ? BrokerAddress.TryParse(text, out var error) ?? throw new CliError($"--upstream: {error}") : null;
            var listen = result.GetValue(port) is var p and not 0 ? p : target?.Port ?? 0;
            if (listen is < 0 or > 65535)
            {
                throw new CliError($"--port must be between 0 and 65535, got {listen}");
            }

            var (up, down) = (result.GetValue(upBps), result.GetValue(downBps));
            if (up < 0 || down < 0)
            {
                throw new CliError("--up-bps and --down-bps must not be negative");
            }

            var chaos = cutSchedule.Parse(result);

            using var logging = Runtime.Logging(result.GetValue(verbose));
            NetnsLink link;
            try
            {
                link = await NetnsLink.CreateAsync(logging.CreateLogger<NetnsLink>(), ct: ct).ConfigureAwait(false);
            }
            catch (NetnsUnavailableException ex)
            {
                throw new CliError(ex.Message);
            }

            LinkEmulator? forwarder = null;
            try
            {
                if (target is not null)
                {
                    forwarder = new LinkEmulator(
                        new LinkEmulatorOptions { Bind = link.HostAddress, ListenPort = listen, UpstreamHost = target.Host, UpstreamPort = target.Port },
                        logging.CreateLogger<LinkEmulator>());
                    var started = forwarder;
                    await CliErrors.ListeningAsync("--port", $"{link.HostAddress}:{listen}", async () =>
                    {
                        await started.StartAsync(ct).ConfigureAwait(false);
                        return true;
                    }).ConfigureAwait(false);
                }

                if (up > 0 || down > 0)
                {
                    await link.SetRateAsync(up, down, ct).ConfigureAwait(false);
                }

                var broker = forwarder is null ? "" : $"{link.HostAddress}:{forwarder.Port}";
                await Console.Error.WriteLineAsync($"iotdsd netns: namespace {link.Namespace}, host {link.HostAddress} ({link.HostDevice}), namespace {link.DeviceAddress}{(broker.Length > 0 ? $", broker {broker} -> {target}" : "")}").ConfigureAwait(false);
                return await NetnsRun.RunAsync(link, result.GetValue(run)!, broker, chaos, ct).ConfigureAwait(false);
            }
            catch (NetnsUnavailableException ex)
            {
                throw new CliError(ex.Message);
            }
            finally
            {
                if (forwarder is not null)
                {
                    await forwarder.DisposeAsync().ConfigureAwait(false);
                }

                await link.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }
}

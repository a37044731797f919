using System.CommandLine;
using System.Globalization;
using System.Net;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd link</c>: the user-space link emulator between a client and its broker. Runs until interrupted; takes
/// commands on stdin (<c>cut</c>, <c>restore</c>, <c>half-open</c>, <c>delay MS [JITTER_MS]</c>, <c>bw UP_BPS DOWN_BPS</c>,
/// <c>status</c>) and can cut the link on a seeded random schedule (<c>--cuts</c>).
/// </summary>
internal static class LinkCommand
{
    public static Command Create()
    {
        var listen = new Option<int>("--listen") { Description = "Port clients connect to (0: a free one, printed at start).", Required = true };
        var upstream = new Option<string>("--upstream") { Description = "Broker (or any TCP server) as HOST:PORT.", Required = true };
        var bind = new Option<string>("--bind") { Description = "Address to listen on.", DefaultValueFactory = _ => "127.0.0.1" };
        var delay = new Option<double>("--delay-ms") { Description = "One-way delay, both directions." };
        var jitter = new Option<double>("--jitter-ms") { Description = "Uniform extra delay 0..J per chunk, both directions." };
        var upDelay = new Option<double?>("--up-delay-ms") { Description = "Client → broker delay (overrides --delay-ms)." };
        var downDelay = new Option<double?>("--down-delay-ms") { Description = "Broker → client delay (overrides --delay-ms)." };
        var upBps = new Option<long>("--up-bps") { Description = "Client → broker bandwidth, bytes/s (0: unlimited)." };
        var downBps = new Option<long>("--down-bps") { Description = "Broker → client bandwidth, bytes/s (0: unlimited)." };
        var cutSchedule = new CutScheduleOptions("Seed of jitter and of the cut schedule.");
        var halfOpen = new Option<double>("--half-open-fraction") { Description = "Share of the scheduled outages that are half-open rather than resets (0..1)." };
        var command = new Command("link", "Emulate a link between a client and its broker: delay, jitter, bandwidth, cuts and half-open connections.")
        {
            listen, upstream, bind, delay, jitter, upDelay, downDelay, upBps, downBps, halfOpen,
        };
        cutSchedule.AddTo(command);
        command.SetAction(async (result, ct) =>
        {
            var target = BrokerAddress.TryParse(result.GetValue(upstream), out var error) ?? throw new CliError($"--upstream: {error}");
            if (!IPAddress.TryParse(result.GetValue(bind), out var address))
            {
                throw new CliError($"--bind must be an IP address, got '{result.GetValue(bind)}'");
            }

            var port = result.GetValue(listen);
            if (port is < 0 or > 65535)
            {
                throw new CliError($"--listen must be between 0 and 65535, got {port}");
            }

            var up = Profile(result.GetValue(upDelay) ?? result.GetValue(delay), result.GetValue(jitter), result.GetValue(upBps));
            var down = Profile(result.GetValue(downDelay) ?? result.GetValue(delay), result.GetValue(jitter), result.GetValue(downBps));
            if ((up.Validate() ?? down.Validate()) is { } bad)
            {
                throw new CliError(bad);
            }

            var chaos = cutSchedule.Parse(result, result.GetValue(halfOpen));

            using var logging = Runtime.Logging(verbose: true);
            await using var link = new LinkEmulator(
                new LinkEmulatorOptions { ListenPort = port, Bind = address, UpstreamHost = target.Host, UpstreamPort = target.Port, Up = up, Down = down, Seed = chaos.Seed },
                logging.CreateLogger<LinkEmulator>());
            await CliErrors.ListeningAsync("--listen", $"{address}:{port}", async () =>
            {
                await link.StartAsync(ct).ConfigureAwait(false);
                return true;
            }).ConfigureAwait(false);
            await Console.Out.WriteLineAsync($"link {address}:{link.Port} -> {target}; up: {up}; down: {down}").ConfigureAwait(false);
            await Console.Out.FlushAsync(ct).ConfigureAwait(false);
            var schedule = chaos.Count > 0
                ? chaos.RunAsync(link, onOutage: (i, d, h) => Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"outage {i + 1}/{chaos.Count}: {(h ? "half-open" : "cut")} for {d.TotalMilliseconds:0} ms")), ct: ct)
                : Task.FromResult(TimeSpan.Zero);
            try
            {
                await LinkControl.RunAsync(link, Console.In, Console.Out, ct).ConfigureAwait(false);
                await schedule.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

            return 0;
        });
        return command;
    }

    private static LinkProfile Profile(double delayMs, double jitterMs, long bps) => new()
    {
        Delay = TimeSpan.FromMilliseconds(delayMs),
        Jitter = TimeSpan.FromMilliseconds(jitterMs),
        BytesPerSecond = bps,
    };
}

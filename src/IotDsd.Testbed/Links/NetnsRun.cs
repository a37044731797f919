using System.Diagnostics;
using System.Globalization;
using IotDsd.Messaging.LinkEmulation;

namespace IotDsd.Testbed.Links;

/// <summary>
/// A command run behind a real link (<c>iotdsd netns</c>): the child process in the namespace, the seeded cut schedule
/// and the control lines (<c>cut</c>, <c>restore</c>, <c>rate UP_BPS DOWN_BPS</c>, <c>status</c>) on stdin.
/// </summary>
internal static class NetnsRun
{
    /// <summary>Runs <paramref name="argv"/> inside the namespace, cutting on <paramref name="chaos"/>'s schedule and obeying control lines on stdin; returns its exit code.</summary>
    public static async Task<int> RunAsync(NetnsLink link, string[] argv, string broker, LinkChaos chaos, CancellationToken ct)
    {
        string Expand(string a) => a.Replace("{broker}", broker, StringComparison.Ordinal).Replace("{host}", link.HostAddress.ToString(), StringComparison.Ordinal);
        var psi = link.Exec(Expand(argv[0]), argv.Skip(1).Select(Expand));
        psi.RedirectStandardInput = true; // stdin carries this command's controls, not the child's input
        psi.Environment["IOTDSD_NETNS_HOST"] = link.HostAddress.ToString();
        psi.Environment["IOTDSD_NETNS_BROKER"] = broker;
        using var child = Process.Start(psi) ?? throw new TestbedException($"could not start {argv[0]}");
        child.StandardInput.Close();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var schedule = ScheduleAsync(link, chaos, stop.Token);

        // Console reads do not observe cancellation: the control loop is left behind when the command ends.
        _ = ControlAsync(link, stop.Token);
        try
        {
            await child.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Swallow(schedule).ConfigureAwait(false);
        }

        await Console.Error.WriteLineAsync($"iotdsd netns: {argv[0]} exited with {child.ExitCode} after {link.Cuts} cuts").ConfigureAwait(false);
        return child.ExitCode;
    }

    private static async Task ScheduleAsync(NetnsLink link, LinkChaos chaos, CancellationToken ct)
    {
        var index = 0;
        try
        {
            foreach (var (upFor, downFor, _) in chaos.Plan())
            {
                await Task.Delay(upFor, ct).ConfigureAwait(false);
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"iotdsd netns: outage {++index}/{chaos.Count}: cut for {downFor.TotalMilliseconds:0} ms")).ConfigureAwait(false);
                await link.CutAsync(ct).ConfigureAwait(false);
                await Task.Delay(downFor, ct).ConfigureAwait(false);
                await link.RestoreAsync(ct).ConfigureAwait(false);
            }
        }
        finally
        {
            if (link.IsCut)
            {
                await link.RestoreAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private static async Task ControlAsync(NetnsLink link, CancellationToken ct)
    {
        while (await Console.In.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
        {
            await Console.Out.WriteLineAsync(await ApplyAsync(link, line, ct).ConfigureAwait(false)).ConfigureAwait(false);
            await Console.Out.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Applies one control line; returns what to print.</summary>
    internal static async Task<string> ApplyAsync(NetnsLink link, string line, CancellationToken ct)
    {
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        try
        {
            switch (words.FirstOrDefault()?.ToLowerInvariant())
            {
                case "cut" or "down":
                    await link.CutAsync(ct).ConfigureAwait(false);
                    break;
                case "restore" or "up":
                    await link.RestoreAsync(ct).ConfigureAwait(false);
                    break;
                case "rate" when words.Length == 3:
                    await link.SetRateAsync((long)LinkControl.Number(words[1]), (long)LinkControl.Number(words[2]), ct).ConfigureAwait(false);
                    break;
                case "status":
                    break;
                default:
                    return "commands: cut | restore | rate UP_BPS DOWN_BPS (0: unlimited) | status";
            }
        }
        catch (Exception ex) when (ex is ArgumentException or NetnsUnavailableException)
        {
            return $"error: {ex.Message}";
        }

        return $"{(link.IsCut ? "cut" : "up")}; {link.Cuts} cuts; host {link.HostAddress}, namespace {link.DeviceAddress} ({link.Namespace})";
    }

    private static async Task Swallow(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }
}

using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace IotDsd.Hosting;

/// <summary>
/// Feeds the systemd watchdog (<c>WatchdogSec=</c>): sends <c>WATCHDOG=1</c> at half the interval systemd asks for,
/// but only while <see cref="ServiceHealth"/> says the service is healthy — otherwise systemd's watchdog fires and
/// <c>Restart=on-failure</c> restarts it. Also keeps <c>STATUS=</c> current for <c>systemctl status</c>.
/// Microsoft.Extensions.Hosting.Systemd itself sends only READY and STOPPING.
/// </summary>
internal sealed partial class SystemdWatchdog(ISystemdNotifier notifier, ServiceHealth health, TimeProvider time, ILogger<SystemdWatchdog> logger)
    : BackgroundService
{
    /// <summary>The watchdog interval systemd asked this process for; null when there is none.</summary>
    public static TimeSpan? Requested()
    {
        if (!long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) || usec <= 0)
        {
            return null;
        }

        // WATCHDOG_PID, when set, names the process that must send the heartbeat.
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        return pid is null || pid == Environment.ProcessId.ToString(CultureInfo.InvariantCulture) ? TimeSpan.FromMicroseconds(usec) : null;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var requested = Requested();
        var period = requested is { } r ? TimeSpan.FromTicks(Math.Max(r.Ticks / 2, TimeSpan.FromMilliseconds(50).Ticks)) : TimeSpan.FromSeconds(10);
        using var timer = new PeriodicTimer(period, time);
        var wasHealthy = true;
        try
        {
            do
            {
                var (healthy, status) = health.Check();
                if (healthy != wasHealthy)
                {
                    if (healthy)
                    {
                        Log.Recovered(logger, status);
                    }
                    else
                    {
                        Log.Unhealthy(logger, status);
                    }

                    wasHealthy = healthy;
                }

                var message = healthy ? $"STATUS={status}" : $"STATUS=unhealthy: {status}";
                notifier.Notify(new ServiceState(healthy && requested is not null ? $"WATCHDOG=1\n{message}" : message));
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 600, Level = LogLevel.Error, Message = "Unhealthy, withholding the watchdog heartbeat: {Status}")]
        public static partial void Unhealthy(ILogger logger, string status);

        [LoggerMessage(EventId = 601, Level = LogLevel.Information, Message = "Healthy again: {Status}")]
        public static partial void Recovered(ILogger logger, string status);
    }
}

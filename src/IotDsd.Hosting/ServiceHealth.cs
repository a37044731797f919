using IotDsd.Messaging.Diagnostics;

namespace IotDsd.Hosting;

/// <summary>
/// Whether a service is healthy enough to keep its systemd watchdog fed: the role's broker link has not been down
/// longer than <c>Health:MaxOfflineMs</c>, the diagnostics loop still ticks (timers and the thread pool run), and
/// while the link claims to be up, publishes still succeed (a half-open link otherwise goes unnoticed).
/// </summary>
internal sealed class ServiceHealth(Func<bool> roleConnected, DiagnosticsAgent? agent, TimeSpan maxOffline, TimeProvider time)
{
    private long _lastConnected = time.GetTimestamp();

    public (bool Healthy, string Status) Check()
    {
        var connected = roleConnected();
        if (connected)
        {
            _lastConnected = time.GetTimestamp();
        }

        var offline = time.GetElapsedTime(_lastConnected);
        if (offline > maxOffline)
        {
            return (false, $"broker link down for {offline.TotalSeconds:0} s (Health:MaxOfflineMs is {maxOffline.TotalMilliseconds:0})");
        }

        if (agent is not null)
        {
            var grace = (3 * agent.Interval) + TimeSpan.FromSeconds(10);
            var stalled = time.GetElapsedTime(agent.LastTick);
            if (stalled > grace)
            {
                return (false, $"diagnostics loop stalled for {stalled.TotalSeconds:0} s");
            }

            if (connected && agent.LastPublished != 0 && time.GetElapsedTime(agent.LastPublished) > grace)
            {
                return (false, $"no publish has succeeded for {time.GetElapsedTime(agent.LastPublished).TotalSeconds:0} s although the link is up (half-open link?)");
            }
        }

        return (true, connected ? "connected to the broker" : $"reconnecting to the broker ({offline.TotalSeconds:0} s)");
    }
}

using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace IotDsd.Hosting;

/// <summary>What every long-running role shares: logging, systemd integration, diagnostics and the watchdog.</summary>
internal static class ServiceHost
{
    private const string HostCategory = "Microsoft.Extensions.Hosting.Internal.Host";

    /// <summary>True when systemd passed a notification socket (<c>Type=notify</c>).</summary>
    public static bool UnderServiceManager => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));

    /// <summary>
    /// The host of a role, logging at <paramref name="level"/>. A role that fails to start (a broker it cannot reach)
    /// ends with one line from the command; the host's own report of that failure, with the stack trace, is logged
    /// only when <paramref name="verbose"/> (or at Debug and below).
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(LogLevel level, bool verbose = false)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("JOURNAL_STREAM")))
        {
            // Under systemd: journald takes priorities from <N> prefixes and adds its own timestamps.
            builder.Logging.AddSystemdConsole();
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        }

        builder.Logging.SetMinimumLevel(level);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // "BackgroundService failed" / "Hosting failed to start": the exception they log is the one RunAsync rethrows,
        // which the command reports as one line.
        builder.Logging.AddFilter(HostCategory, verbose || level <= LogLevel.Debug ? LogLevel.Warning : LogLevel.None);
        builder.Services.AddSingleton(TimeProvider.System);
        if (UnderServiceManager)
        {
            // Registered directly rather than through AddSystemd(), whose parent-process check fails under
            // ProtectProc= and in containers; NOTIFY_SOCKET is what systemd actually hands a Type=notify service.
            builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
            builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
        }

        return builder;
    }

    /// <summary>
    /// Runs the host until it stops. A stop asked for before the host finished starting (SIGTERM while connecting) is a
    /// clean stop like any other, not a failure. The roles' start-up steps end quietly when stopped (so the host logs no
    /// "failed to start"); this covers the host's own check of the stop between its start-up steps.
    /// </summary>
    public static async Task RunAsync(IHost host, CancellationToken ct)
    {
        var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        try
        {
            await host.RunAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested || stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Adds the diagnostics agent (unless disabled) and, under a service manager, the watchdog. Call after the role's
    /// own hosted services, so that "ready" is only sent once the role has connected.
    /// </summary>
    public static void AddOperations(
        HostApplicationBuilder builder, ServiceSettings settings, Func<IServiceProvider, IDiagnosticsSource> source, Func<IServiceProvider, bool> roleConnected)
    {
        if (settings.Diagnostics is { } diagnostics)
        {
            builder.Services.AddSingleton(sp => new DiagnosticsAgent(diagnostics, source(sp), sp.GetRequiredService<ILogger<DiagnosticsAgent>>(), sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DiagnosticsAgent>());
        }

        builder.Services.AddSingleton(sp => new ServiceHealth(() => roleConnected(sp), sp.GetService<DiagnosticsAgent>(), settings.MaxOffline, sp.GetRequiredService<TimeProvider>()));
        if (UnderServiceManager)
        {
            builder.Services.AddHostedService<SystemdWatchdog>();
        }
    }

    /// <summary>Reads the MQTT and operations settings every role shares.</summary>
    public static ServiceSettings ReadCommon(LayeredConfiguration config)
    {
        var broker = config.Parsed<BrokerAddress>(Settings.Broker, t => (BrokerAddress.TryParse(t, out var e), e), Settings.Broker.Default);
        var username = config.String(Settings.Username);
        var password = config.String(Settings.Password);
        var passwordFile = config.String(Settings.PasswordFile);
        if (password is null && passwordFile is not null)
        {
            try
            {
                password = File.ReadLines(passwordFile).FirstOrDefault()?.TrimEnd() ?? "";
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                config.Problem(Settings.PasswordFile, $"cannot be read: {ex.Message.TrimEnd('.')}");
            }
        }

        password ??= Environment.GetEnvironmentVariable("IOTDSD_MQTT_PASSWORD");
        if (string.IsNullOrEmpty(password))
        {
            password = null; // an empty password file (as installed) means none
        }

        if (password is not null && username is null)
        {
            config.Problem(Settings.Username, "must be set when a password is given");
        }

        var enabled = config.Bool(Settings.DiagnosticsEnabled);
        var interval = config.Millis(Settings.MetricsInterval, 100, 3_600_000);
        var maxOffline = config.Millis(Settings.MaxOffline, 1000, 30L * 24 * 3_600_000);
        var level = config.Parsed<LogLevel>(Settings.LogLevel, t => Enum.TryParse<LogLevel>(t, ignoreCase: true, out var l) && Enum.IsDefined(l)
            ? (l, (string?)null)
            : (LogLevel.Information, "must be Trace, Debug, Information, Warning, Error or Critical"), Settings.LogLevel.Default);
        broker ??= new BrokerAddress("127.0.0.1", BrokerAddress.DefaultPort);
        var tls = TransportSettings.Read(config, broker);
        return new ServiceSettings(
            broker,
            username,
            password,
            enabled ? new DiagnosticsSettings { Broker = broker, Username = username, Password = password, Tls = tls, MetricsInterval = interval } : null,
            maxOffline,
            level,
            tls);
    }
}

/// <summary>The shared settings of a role, validated.</summary>
internal sealed record ServiceSettings(
    BrokerAddress Broker, string? Username, string? Password, DiagnosticsSettings? Diagnostics, TimeSpan MaxOffline, LogLevel LogLevel,
    MqttTlsSettings? Tls = null);

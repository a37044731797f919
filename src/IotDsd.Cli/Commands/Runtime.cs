using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>Process-wide bits every command needs: logging to stderr, Ctrl+C.</summary>
internal static class Runtime
{
    /// <summary>Logging to stderr: information and up when <paramref name="verbose"/>, else <paramref name="quiet"/> and up.</summary>
    public static ILoggerFactory Logging(bool verbose, LogLevel quiet = LogLevel.Warning) => LoggerFactory.Create(b => b
        .SetMinimumLevel(verbose ? LogLevel.Information : quiet)
        .AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        })
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
        .AddFilter("Microsoft", LogLevel.Warning));
}

using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary>Process-wide bits every command needs: logging to stderr, Ctrl+C.</summary>
internal static class Runtime
{
    public static ILoggerFactory Logging(bool verbose) => LoggerFactory.Create(b => b
        .SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning)
        .AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        })
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
        .AddFilter("Microsoft", LogLevel.Warning));
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using IotDsd.Edge.Drafting;
using IotDsd.Inference.Tokenizers;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Edge.Hosting;

/// <summary>
/// The draft worker as a long-running service: connects in <see cref="StartAsync"/> (so a service manager hears
/// "ready" only once the device is on the broker), then runs generations from its prompt list in turn, appending
/// each completion to a JSON-lines file in its state directory. Without prompts it stays connected and idle.
/// A failed generation is logged and counted; the next one is tried after the job interval.
/// </summary>
public sealed partial class EdgeService(
    EdgeServiceOptions options, DraftWorker worker, ITokenizer tokenizer, EdgeMetrics metrics, ILogger<EdgeService> logger, TimeProvider time)
    : BackgroundService
{
    private readonly string _runId = ProcessClock.NowMs(time).ToString("x", CultureInfo.InvariantCulture);

    /// <summary>From process start to the first MQTT connect; null before it.</summary>
    public TimeSpan? StartupTime { get; private set; }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(options.StateDirectory);
        try
        {
            await worker.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return; // stopped while connecting (SIGTERM during start-up): nothing to run, and not a failure
        }

        StartupTime = ProcessClock.SinceStart(time);
        Log.Connected(logger, StartupTime.Value.TotalMilliseconds, options.Prompts.Count);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            for (var job = 0; options.Prompts.Count > 0 && (options.MaxJobs == 0 || job < options.MaxJobs); job++)
            {
                var prompt = options.Prompts[job % options.Prompts.Count];
                metrics.QueueDepth = 1;
                await RunOneAsync(job, prompt, stoppingToken).ConfigureAwait(false);
                metrics.QueueDepth = 0;
                await Task.Delay(options.JobInterval, time, stoppingToken).ConfigureAwait(false);
            }

            await Task.Delay(Timeout.InfiniteTimeSpan, time, stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RunOneAsync(int job, string prompt, CancellationToken ct)
    {
        var settings = options.Generation with { SessionId = $"{_runId}-{job}" };
        var text = new StringBuilder();
        var stream = tokenizer.CreateStreamDecoder();
        try
        {
            var ids = tokenizer.Encode(prompt);
            if (options.Bos is { } bos && (ids.Length == 0 || ids[0] != bos))
            {
                ids = [bos, .. ids];
            }

            var report = await worker.GenerateAsync(ids, settings, t => text.Append(stream.Append(t)), ct).ConfigureAwait(false);
            text.Append(stream.Flush());
            metrics.GenerationCompleted();
            var line = JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["session"] = report.SessionId,
                ["prompt"] = prompt,
                ["text"] = text.ToString(),
                ["tokens"] = report.Tokens.Count,
                ["stop_reason"] = report.StopReason == Core.Sessions.StopReason.Eos ? "eos" : "max_tokens",
                ["acceptance_rate"] = Math.Round(report.AcceptanceRate, 4),
                ["tokens_per_s"] = Math.Round(report.TokensPerSecond, 1),
                ["verifier"] = report.VerifierId,
                ["mode"] = report.Mode.ToString().ToLowerInvariant(),
            });
            await File.AppendAllTextAsync(options.CompletionsFile, line + "\n", ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is GenerationException or MqttPublishException or IOException)
        {
            metrics.Error(ex is IOException ? "state_write_failed" : "generation_failed");
            Log.GenerationFailed(logger, settings.SessionId, ex.Message);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        await worker.DisposeAsync().ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 310, Level = LogLevel.Information, Message = "Device connected {StartupMs:0} ms after process start; {Prompts} prompts queued")]
        public static partial void Connected(ILogger logger, double startupMs, int prompts);

        [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "Generation {SessionId} failed: {Reason}")]
        public static partial void GenerationFailed(ILogger logger, string sessionId, string reason);
    }
}

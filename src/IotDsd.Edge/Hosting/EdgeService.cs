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
/// <para>
/// Which job of which run comes next is kept in <c>service.json</c> in the state directory (rewritten atomically
/// after every job), and the draft worker saves the generation in progress there after every round: a service
/// killed mid-generation (power loss) and started again resumes that same generation under the same session id, and
/// goes on with the jobs that were left. A run that did all of <see cref="EdgeServiceOptions.MaxJobs"/> is finished:
/// the next start begins a new one.
/// </para>
/// </summary>
public sealed partial class EdgeService(
    EdgeServiceOptions options, DraftWorker worker, ITokenizer tokenizer, EdgeMetrics metrics, ILogger<EdgeService> logger, TimeProvider time)
    : BackgroundService
{
    private string _runId = "";
    private int _firstJob;

    /// <summary>From process start to the first MQTT connect; null before it.</summary>
    public TimeSpan? StartupTime { get; private set; }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(options.StateDirectory);
        (_runId, _firstJob) = LoadCursor();
        if (_firstJob > 0)
        {
            Log.Continuing(logger, _runId, _firstJob);
        }

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
            for (var job = _firstJob; options.Prompts.Count > 0 && (options.MaxJobs == 0 || job < options.MaxJobs); job++)
            {
                var prompt = options.Prompts[job % options.Prompts.Count];
                metrics.QueueDepth = 1;
                await RunOneAsync(job, prompt, stoppingToken).ConfigureAwait(false);
                metrics.QueueDepth = 0;
                SaveCursor(job + 1);
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
        var stream = tokenizer.CreateStreamDecoder(atStart: prompt.Length == 0);
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

    private string CursorFile => Path.Combine(options.StateDirectory, "service.json");

    /// <summary>The run and next job to continue, or a new run (saved at once) when there is none to continue.</summary>
    private (string Run, int Job) LoadCursor()
    {
        try
        {
            if (File.Exists(CursorFile))
            {
                var cursor = JsonSerializer.Deserialize<Cursor>(File.ReadAllBytes(CursorFile));
                if (cursor is { Run.Length: > 0, Job: >= 0 } && Contracts.Topics.TopicScheme.IsValidId($"{cursor.Run}-{cursor.Job}")
                    && (options.MaxJobs == 0 || cursor.Job < options.MaxJobs))
                {
                    return (cursor.Run, cursor.Job);
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
        {
            Log.CursorUnreadable(logger, CursorFile, ex.Message);
        }

        _runId = ProcessClock.NowMs(time).ToString("x", CultureInfo.InvariantCulture);
        SaveCursor(0);
        return (_runId, 0);
    }

    private void SaveCursor(int nextJob)
    {
        try
        {
            var temp = CursorFile + ".tmp";
            File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(new Cursor { Run = _runId, Job = nextJob }));
            File.Move(temp, CursorFile, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            metrics.Error("state_write_failed");
            Log.CursorUnwritable(logger, CursorFile, ex.Message);
        }
    }

    private sealed record Cursor
    {
        [System.Text.Json.Serialization.JsonPropertyName("run")] public string Run { get; init; } = "";
        [System.Text.Json.Serialization.JsonPropertyName("job")] public int Job { get; init; } = -1;
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

        [LoggerMessage(EventId = 312, Level = LogLevel.Information, Message = "Continuing run {Run} at job {Job} (a generation saved in progress resumes)")]
        public static partial void Continuing(ILogger logger, string run, int job);

        [LoggerMessage(EventId = 313, Level = LogLevel.Warning, Message = "Service progress in {Path} cannot be read ({Reason}): starting a new run")]
        public static partial void CursorUnreadable(ILogger logger, string path, string reason);

        [LoggerMessage(EventId = 314, Level = LogLevel.Warning, Message = "Service progress cannot be saved to {Path} ({Reason}): a restart will start a new run")]
        public static partial void CursorUnwritable(ILogger logger, string path, string reason);
    }
}

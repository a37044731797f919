using System.Text.Json;
using System.Text.Json.Serialization;
using IotDsd.Contracts.Topics;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Presence;

/// <summary>
/// The counters a retained birth carries, kept across restarts in the spirit of Sparkplug B's bdSeq: <see cref="Boot"/>
/// counts process starts, <see cref="Connection"/> counts connects over every start. A field engineer reading the
/// retained status tells a reconnect (connection up, boot unchanged) from a restart (boot up as well).
/// <para>
/// Kept in <c>ROLE-ID.presence.json</c> in a state directory, rewritten atomically (temporary file, then rename) on
/// every start and connect. A missing file starts at boot 1; an unreadable one is kept aside as <c>*.corrupt</c>, logged
/// as a warning, and counting starts afresh; a directory that cannot be written is logged and counting goes on in
/// memory. None of these stops the process.
/// </para>
/// </summary>
public sealed partial class PresenceSequence
{
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private long _connection;
    private bool _saveFailed;

    private PresenceSequence(string path, long boot, long connection, ILogger logger)
    {
        _path = path;
        _logger = logger;
        Boot = boot;
        _connection = connection;
    }

    /// <summary>Process starts with this state directory, this one included.</summary>
    public long Boot { get; }

    /// <summary>The last connection number handed out (0 before the first connect ever).</summary>
    public long Connection
    {
        get
        {
            lock (_lock)
            {
                return _connection;
            }
        }
    }

    /// <summary>The file the counters live in.</summary>
    public string FilePath => _path;

    /// <summary>Loads the counters of <paramref name="role"/> <paramref name="id"/> from <paramref name="directory"/>, counts this start and saves.</summary>
    public static PresenceSequence Open(string directory, string role, string id, ILogger logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!TopicScheme.IsValidId(role) || !TopicScheme.IsValidId(id))
        {
            throw new ArgumentException($"presence role '{role}' and id '{id}' must be 1-64 characters of A-Z a-z 0-9 _ . -");
        }

        var path = Path.Combine(Path.GetFullPath(directory), $"{role}-{id}.presence.json");
        var saved = Load(path, logger);
        var sequence = new PresenceSequence(path, (saved?.Boot ?? 0) + 1, saved?.Connection ?? 0, logger);
        lock (sequence._lock)
        {
            sequence.Save();
        }

        Log.Opened(logger, role, id, sequence.Boot, sequence._connection, path);
        return sequence;
    }

    /// <summary>Counts a new connection, saves, and returns its number (the birth's <c>connection</c>).</summary>
    public long Next()
    {
        lock (_lock)
        {
            _connection++;
            Save();
            return _connection;
        }
    }

    private static Counters? Load(string path, ILogger logger)
    {
        if (!File.Exists(path))
        {
            Log.Missing(logger, path);
            return null;
        }

        string reason;
        try
        {
            var counters = JsonSerializer.Deserialize<Counters>(File.ReadAllBytes(path));
            if (counters is { Boot: >= 0, Connection: >= 0 })
            {
                return counters;
            }

            reason = "counters missing or negative";
        }
        catch (JsonException ex)
        {
            reason = ex.Message;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.Unreadable(logger, path, ex.Message);
            return null;
        }

        try
        {
            File.Move(path, path + ".corrupt", overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            reason += $"; could not keep it aside: {ex.Message}";
        }

        Log.Corrupt(logger, path, reason);
        return null;
    }

    private void Save()
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
            var temp = _path + ".tmp";
            File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(new Counters { Boot = Boot, Connection = _connection }));
            File.Move(temp, _path, overwrite: true);
            _saveFailed = false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Once per run of failures: the counters go on in memory.
            if (!_saveFailed)
            {
                Log.SaveFailed(_logger, _path, ex.Message);
            }

            _saveFailed = true;
        }
    }

    private sealed record Counters
    {
        [JsonPropertyName("boot")] public long Boot { get; init; } = -1;
        [JsonPropertyName("connection")] public long Connection { get; init; } = -1;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 430, Level = LogLevel.Information, Message = "Presence of {Role} {Id}: boot {Boot}, last connection {Connection} (kept in {Path})")]
        public static partial void Opened(ILogger logger, string role, string id, long boot, long connection, string path);

        [LoggerMessage(EventId = 431, Level = LogLevel.Information, Message = "No presence counters at {Path}: starting at boot 1")]
        public static partial void Missing(ILogger logger, string path);

        [LoggerMessage(EventId = 432, Level = LogLevel.Warning, Message = "Presence counters in {Path} are corrupt ({Reason}): kept aside as .corrupt, counting starts afresh at boot 1, connection 1")]
        public static partial void Corrupt(ILogger logger, string path, string reason);

        [LoggerMessage(EventId = 433, Level = LogLevel.Warning, Message = "Presence counters in {Path} cannot be read ({Reason}): counting starts afresh at boot 1, connection 1")]
        public static partial void Unreadable(ILogger logger, string path, string reason);

        [LoggerMessage(EventId = 434, Level = LogLevel.Warning, Message = "Presence counters cannot be saved to {Path} ({Reason}): counting goes on in memory, a restart will not continue them")]
        public static partial void SaveFailed(ILogger logger, string path, string reason);
    }
}

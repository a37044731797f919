using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using IotDsd.Core.Sessions;

namespace IotDsd.Edge.Resilience;

/// <summary>
/// Device-side persistence of generations in progress: one append-only journal per session in a directory
/// (<c>{session}.session.journal</c>), so a restarted process resumes where the last saved round left off. The file
/// also records what the generation was asked to do; a restart that asks for something else is refused rather than
/// resumed.
/// <para>
/// Format (little-endian): the 8-byte magic <c>IOTDSDJ</c> + format version 1, then records, each a 4-byte payload
/// length, the payload's 4-byte CRC-32 (IEEE) and the payload. The first record is a snapshot (fingerprint, session
/// id, prompt length, round, epoch, counters, every committed token); each later one a round (round, epoch, counters,
/// the tokens committed since the previous record). Integers are zigzag LEB128 varints. Reading stops at the first
/// record that is cut short, fails its checksum or does not decode: a torn or corrupt tail is ignored and the state
/// is that of the last good record, an older committed prefix that the verifier reconciles.
/// </para>
/// <para>
/// Appends reach the page cache at once (a killed process loses nothing); <see cref="JournalPolicy"/> says when they
/// are fsynced and when the journal is compacted into a fresh snapshot (temporary file, fsync, atomic rename). The
/// older JSON file (<c>{session}.session.json</c>, rewritten whole each round) is still read, and replaced by a
/// journal at the next save.
/// </para>
/// </summary>
public sealed partial class SessionStore : IDisposable
{
    /// <summary>What a journal's file name ends with, after the session id.</summary>
    public const string JournalSuffix = ".session.journal";

    private const string LegacySuffix = ".session.json";
    private const byte FormatVersion = 1;
    private const byte SnapshotKind = 1;
    private const byte RoundKind = 2;
    private const int FrameBytes = 8;
    private const int MaxRecordBytes = 64 << 20;

    private readonly string _directory;
    private readonly JournalPolicy _policy;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, Journal> _open = new(StringComparer.Ordinal);

    public SessionStore(string directory)
        : this(directory, new JournalPolicy())
    {
    }

    public SessionStore(string directory, JournalPolicy policy, TimeProvider? time = null)
    {
        if (string.IsNullOrWhiteSpace(directory))
        {
            throw new ArgumentException("state directory is empty", nameof(directory));
        }

        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Validate() is { } invalid)
        {
            throw new ArgumentException(invalid, nameof(policy));
        }

        _policy = policy;
        _time = time ?? TimeProvider.System;
        _directory = Path.GetFullPath(directory);
        try
        {
            Directory.CreateDirectory(_directory);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"state directory '{_directory}' cannot be created: {ex.Message}", nameof(directory), ex);
        }
    }

    private static ReadOnlySpan<byte> Magic => "IOTDSDJ"u8;

    /// <summary>Bytes this store has written (records, snapshots and their headers).</summary>
    public long BytesWritten { get; private set; }

    /// <summary>fsync calls this store has made (on journal files and on the directory after a rename).</summary>
    public long Syncs { get; private set; }

    /// <summary>Snapshots written: a session's first save in this store, and every compaction.</summary>
    public long Snapshots { get; private set; }

    /// <summary>Round records appended.</summary>
    public long Appends { get; private set; }

    /// <summary>The saved state of <paramref name="sessionId"/> if it was asked for with the same <paramref name="fingerprint"/>; null if none.</summary>
    /// <exception cref="InvalidDataException">The file exists but is not a journal, or belongs to a different request.</exception>
    public DraftSessionState? Load(string sessionId, string fingerprint)
    {
        var path = PathOf(sessionId);
        Close(sessionId); // the next save starts a fresh snapshot
        if (File.Exists(path))
        {
            var contents = Read(path);
            if (contents.State is null)
            {
                return null; // not even the snapshot survived whole: start over (same text, more work)
            }

            return contents.Fingerprint == fingerprint
                ? contents.State
                : throw new InvalidDataException($"saved session '{path}' was started with different settings ({contents.Fingerprint}); delete it or use another session id");
        }

        return LoadLegacy(Path.ChangeExtension(path, null) + ".json", fingerprint);
    }

    /// <summary>Records <paramref name="state"/>: one appended round where it extends the last saved state, else a fresh snapshot.</summary>
    public void Save(DraftSessionState state, string fingerprint)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(fingerprint);
        var path = PathOf(state.SessionId);
        if (!_open.TryGetValue(state.SessionId, out var journal) || journal.Fingerprint != fingerprint || !Extends(journal.Last, state))
        {
            WriteSnapshot(path, state, fingerprint);
            return;
        }

        var frame = Frame(EncodeRound(journal.Last, state));
        journal.Stream.Write(frame);
        BytesWritten += frame.Length;
        Appends++;
        journal.Last = state;
        journal.TailBytes += frame.Length;
        if (++journal.Unsynced >= _policy.SyncEveryRounds || _time.GetElapsedTime(journal.LastSync) >= _policy.SyncInterval)
        {
            journal.Stream.Flush(flushToDisk: true);
            Syncs++;
            journal.Unsynced = 0;
            journal.LastSync = _time.GetTimestamp();
        }

        if (journal.TailBytes > Math.Max(_policy.CompactAfterBytes, journal.SnapshotBytes))
        {
            WriteSnapshot(path, state, fingerprint);
        }
    }

    /// <summary>Forgets a finished session.</summary>
    public void Delete(string sessionId)
    {
        var path = PathOf(sessionId);
        Close(sessionId);
        File.Delete(path);
        File.Delete(path + ".tmp");
        File.Delete(Path.ChangeExtension(path, null) + ".json");
    }

    public void Dispose()
    {
        foreach (var journal in _open.Values)
        {
            journal.Stream.Dispose();
        }

        _open.Clear();
    }

    /// <summary>
    /// Reads a journal without changing it: the state of its last good record (null if not even the snapshot is
    /// whole), the fingerprint, and how many bytes and records were good.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a session journal, or one of a newer format.</exception>
    public static JournalContents Read(string path)
    {
        var data = File.ReadAllBytes(path);
        var header = Magic.Length + 1;
        if (data.Length < header)
        {
            // Shorter than the header: only a file cut short while it was created, which a rename never exposes.
            return Magic.StartsWith(data.AsSpan(0, Math.Min(data.Length, Magic.Length)))
                ? new JournalContents(null, null, 0, 0, data.Length)
                : throw new InvalidDataException($"'{path}' is not a session journal; delete it to start over");
        }

        if (!data.AsSpan().StartsWith(Magic))
        {
            throw new InvalidDataException($"'{path}' is not a session journal; delete it to start over");
        }

        if (data[Magic.Length] != FormatVersion)
        {
            throw new InvalidDataException($"session journal '{path}' has format version {data[Magic.Length]}, this build reads version {FormatVersion}; delete it to start over");
        }

        var pos = header;
        var records = 0;
        DraftSessionState? state = null;
        string? fingerprint = null;
        while (data.Length - pos >= FrameBytes)
        {
            var length = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos));
            var crc = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos + 4));
            if (length is 0 or > MaxRecordBytes || length > data.Length - pos - FrameBytes)
            {
                break;
            }

            var payload = data.AsSpan(pos + FrameBytes, (int)length);
            if (Crc32.HashToUInt32(payload) != crc || !TryApply(payload, ref state, ref fingerprint))
            {
                break;
            }

            pos += FrameBytes + (int)length;
            records++;
        }

        return new JournalContents(fingerprint, state, pos, records, data.Length - pos);
    }

    private static DraftSessionState? LoadLegacy(string path, string fingerprint)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        LegacySaved? saved;
        try
        {
            saved = JsonSerializer.Deserialize<LegacySaved>(File.ReadAllBytes(path));
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"saved session '{path}' (JSON, the older format) is corrupt ({ex.Message}); delete it to start over", ex);
        }

        if (saved?.State is null)
        {
            throw new InvalidDataException($"saved session '{path}' (JSON, the older format) is empty; delete it to start over");
        }

        return saved.Fingerprint == fingerprint
            ? saved.State
            : throw new InvalidDataException($"saved session '{path}' was started with different settings ({saved.Fingerprint}); delete it or use another session id");
    }

    private void WriteSnapshot(string path, DraftSessionState state, string fingerprint)
    {
        Close(state.SessionId);
        var record = Frame(EncodeSnapshot(state, fingerprint));
        var bytes = new byte[Magic.Length + 1 + record.Length];
        Magic.CopyTo(bytes);
        bytes[Magic.Length] = FormatVersion;
        record.CopyTo(bytes, Magic.Length + 1);
        var temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
        {
            file.Write(bytes);
            file.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
        Syncs += SyncDirectory(_directory) ? 2 : 1;
        BytesWritten += bytes.Length;
        Snapshots++;
        File.Delete(Path.ChangeExtension(path, null) + ".json"); // an older-format file is now superseded

        var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.Read | FileShare.Delete, bufferSize: 0);
        stream.Seek(0, SeekOrigin.End);
        _open[state.SessionId] = new Journal(stream, fingerprint, state, bytes.Length, _time.GetTimestamp());
    }

    private void Close(string sessionId)
    {
        if (_open.Remove(sessionId, out var journal))
        {
            journal.Stream.Dispose();
        }
    }

    private static bool Extends(DraftSessionState last, DraftSessionState state) =>
        last.SessionId == state.SessionId
        && last.PromptLength == state.PromptLength
        && state.Committed.Length >= last.Committed.Length
        && state.Committed.AsSpan(0, last.Committed.Length).SequenceEqual(last.Committed);

    private string PathOf(string sessionId) => Contracts.Topics.TopicScheme.IsValidId(sessionId)
        ? Path.Combine(_directory, sessionId + JournalSuffix)
        : throw new ArgumentException($"session id '{sessionId}' must be 1-64 characters of A-Z a-z 0-9 _ . -", nameof(sessionId));

    /// <summary>fsyncs a directory so a rename in it survives a power cut (POSIX only; elsewhere the rename is trusted).</summary>
    private static bool SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return false;
        }

        try
        {
            var fd = NativeOpen(directory, 0); // O_RDONLY
            if (fd < 0)
            {
                return false;
            }

            var ok = NativeFsync(fd) == 0;
            _ = NativeClose(fd);
            return ok;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int NativeFsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int NativeClose(int fd);

    private sealed class Journal(FileStream stream, string fingerprint, DraftSessionState last, long snapshotBytes, long lastSync)
    {
        public FileStream Stream { get; } = stream;
        public string Fingerprint { get; } = fingerprint;
        public DraftSessionState Last { get; set; } = last;
        public long SnapshotBytes { get; } = snapshotBytes;
        public long TailBytes { get; set; }
        public int Unsynced { get; set; }
        public long LastSync { get; set; } = lastSync;
    }

    private sealed record LegacySaved
    {
        public string Fingerprint { get; init; } = "";
        public DraftSessionState? State { get; init; }
    }
}

/// <summary>What <see cref="SessionStore.Read"/> found in a journal.</summary>
/// <param name="Fingerprint">What the generation was asked to do; null when no snapshot was whole.</param>
/// <param name="State">The state after the last good record; null when not even the snapshot was whole.</param>
/// <param name="GoodBytes">Bytes up to the end of the last good record.</param>
/// <param name="Records">Good records (the snapshot and the rounds after it).</param>
/// <param name="IgnoredBytes">Bytes after the last good record: a torn or corrupt tail.</param>
public sealed record JournalContents(string? Fingerprint, DraftSessionState? State, long GoodBytes, int Records, long IgnoredBytes);

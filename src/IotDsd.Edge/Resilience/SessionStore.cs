using System.Text.Json;
using IotDsd.Core.Sessions;

namespace IotDsd.Edge.Resilience;

/// <summary>
/// Device-side persistence of generations in progress: one JSON file per session in a directory, rewritten
/// atomically (write a temporary file, then rename over the old one) after every committed round, so a killed process
/// finds either the previous or the new state, never a torn one. The file also records what the generation was asked
/// to do; a restart that asks for something else is refused rather than resumed.
/// </summary>
public sealed class SessionStore
{
    private readonly string _directory;

    public SessionStore(string directory)
    {
        if (string.IsNullOrWhiteSpace(directory))
        {
            throw new ArgumentException("state directory is empty", nameof(directory));
        }

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

    /// <summary>The saved state of <paramref name="sessionId"/> if it was asked for with the same <paramref name="fingerprint"/>; null if none.</summary>
    /// <exception cref="InvalidDataException">The file exists but is unreadable, or belongs to a different request.</exception>
    public DraftSessionState? Load(string sessionId, string fingerprint)
    {
        var path = PathOf(sessionId);
        if (!File.Exists(path))
        {
            return null;
        }

        Saved? saved;
        try
        {
            saved = JsonSerializer.Deserialize<Saved>(File.ReadAllBytes(path));
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"saved session '{path}' is corrupt ({ex.Message}); delete it to start over", ex);
        }

        if (saved?.State is null)
        {
            throw new InvalidDataException($"saved session '{path}' is empty; delete it to start over");
        }

        if (saved.Fingerprint != fingerprint)
        {
            throw new InvalidDataException($"saved session '{path}' was started with different settings ({saved.Fingerprint}); delete it or use another session id");
        }

        return saved.State;
    }

    public void Save(DraftSessionState state, string fingerprint)
    {
        var path = PathOf(state.SessionId);
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(new Saved { Fingerprint = fingerprint, State = state }));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Forgets a finished session.</summary>
    public void Delete(string sessionId) => File.Delete(PathOf(sessionId));

    private string PathOf(string sessionId) => Contracts.Topics.TopicScheme.IsValidId(sessionId)
        ? Path.Combine(_directory, $"{sessionId}.session.json")
        : throw new ArgumentException($"session id '{sessionId}' must be 1-64 characters of A-Z a-z 0-9 _ . -", nameof(sessionId));

    private sealed record Saved
    {
        public string Fingerprint { get; init; } = "";
        public DraftSessionState? State { get; init; }
    }
}

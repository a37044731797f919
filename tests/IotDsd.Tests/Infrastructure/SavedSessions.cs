using System.Text.Json;
using IotDsd.Core.Sessions;

namespace IotDsd.Tests.Infrastructure;

/// <summary>Reads what a device process (<c>--state-dir</c>) saved after its last committed round.</summary>
public static class SavedSessions
{
    /// <summary>Tokens committed beyond the prompt in the first saved session of <paramref name="dir"/>; null when none is saved (yet, or any more).</summary>
    public static int? CommittedTokens(string dir)
    {
        foreach (var file in Directory.Exists(dir) ? Directory.GetFiles(dir, "*.session.json") : [])
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
                var state = doc.RootElement.GetProperty("State").Deserialize<DraftSessionState>()!;
                return state.Committed.Length - state.PromptLength;
            }
            catch (Exception ex) when (ex is IOException or JsonException)
            {
                // Mid-rename or gone: the next poll sees the new file.
            }
        }

        return null;
    }
}

using IotDsd.Edge.Resilience;

namespace IotDsd.Tests.Infrastructure;

/// <summary>Reads what a device process (<c>--state-dir</c>) has journaled of its generation so far.</summary>
public static class SavedSessions
{
    /// <summary>Tokens committed beyond the prompt in the first saved session of <paramref name="dir"/>; null when none is saved (yet, or any more).</summary>
    public static int? CommittedTokens(string dir)
    {
        foreach (var file in Directory.Exists(dir) ? Directory.GetFiles(dir, "*" + SessionStore.JournalSuffix) : [])
        {
            try
            {
                if (SessionStore.Read(file).State is { } state)
                {
                    return state.Committed.Length - state.PromptLength;
                }
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException)
            {
                // Mid-compaction or gone: the next poll sees the new file.
            }
        }

        return null;
    }
}

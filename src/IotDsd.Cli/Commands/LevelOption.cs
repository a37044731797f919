using System.CommandLine;
using IotDsd.Edge.Resilience;

namespace IotDsd.Cli.Commands;

/// <summary>The <c>--level</c> flag (and <c>Edge:Level</c> setting): pins the degradation ladder at a rung.</summary>
internal static class LevelOption
{
    public static Option<string?> Create() => new("--level")
    {
        Description = "Pin the degradation ladder: normal, reduced-gamma, gamma-1 or verifier-decoding (below normal, sampling modes change γ: exact, but a seed names another text).",
    };

    /// <summary>The rung named <paramref name="text"/>; null for none; <paramref name="problem"/> hears why a name is refused.</summary>
    public static DegradationLevel? Parse(string? text, Action<string> problem)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        var level = Enum.GetValues<DegradationLevel>().Where(l => l != DegradationLevel.Offline).Cast<DegradationLevel?>().FirstOrDefault(l => DegradationLadder.Name(l!.Value) == text);
        if (level is null)
        {
            problem($"must be normal, reduced-gamma, gamma-1 or verifier-decoding, got '{text}'");
        }

        return level;
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace IotDsd.Sim.Scenarios;

/// <summary>
/// Scenario files: JSON with snake_case names, every field optional (defaults as in <see cref="Scenario"/>), unknown
/// fields refused so a typo cannot silently fall back to a default.
/// </summary>
public static class ScenarioFile
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
        Converters = { new ModeConverter() },
    };

    /// <summary>Reads and validates a scenario; throws <see cref="FormatException"/> with the reason.</summary>
    public static Scenario Load(string path) => Parse(ReadText(path, "scenario"), path);

    /// <summary>Reads a whole text file; an unreadable file becomes a <see cref="FormatException"/> naming it.</summary>
    internal static string ReadText(string path, string what)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new FormatException($"cannot read {what} file {path}: {ex.Message}");
        }
    }

    public static Scenario Parse(string text, string name = "scenario")
    {
        Scenario? scenario;
        try
        {
            scenario = JsonSerializer.Deserialize<Scenario>(text, Json);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"{name} is not a valid scenario: {ex.Message}");
        }

        if (scenario is null)
        {
            throw new FormatException($"{name} is empty");
        }

        return scenario.Validate() is { } bad ? throw new FormatException($"{name}: {bad}") : scenario;
    }

    public static string ToJson(Scenario scenario) => JsonSerializer.Serialize(scenario, Json);

    private sealed class ModeConverter : JsonConverter<SimMode>
    {
        public override SimMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            SimModes.TryParse(reader.GetString(), out var mode)
                ? mode
                : throw new JsonException($"mode must be one of {string.Join(", ", SimModes.All.Select(m => m.Name()))}");

        public override void Write(Utf8JsonWriter writer, SimMode value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name());
    }
}

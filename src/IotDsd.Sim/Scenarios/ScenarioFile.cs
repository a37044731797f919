using IotDsd.Contracts.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

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
        TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        Converters = { new ModeConverter() },
    };

    /// <summary>Reads and validates a scenario; throws <see cref="FormatException"/> with a one-line reason naming the file.</summary>
    public static Scenario Load(string path) => Parse(ReadText(path, "scenario"), $"scenario file {path}");

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

    /// <summary>
    /// Parses and validates a scenario. Problems come back as a <see cref="FormatException"/> whose message starts with
    /// <paramref name="name"/> and names the field by its path in the file (<c>link.rtt_ms</c>), never a .NET type.
    /// </summary>
    public static Scenario Parse(string text, string name = "scenario")
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new FormatException($"{name} is not valid JSON at line {(ex.LineNumber ?? 0) + 1}: {ex.Message.Split(" LineNumber:")[0]}");
        }

        using (document)
        {
            if (Check(document.RootElement, typeof(Scenario), "") is { } problem)
            {
                throw new FormatException($"{name}: {problem}");
            }
        }

        Scenario? scenario;
        try
        {
            scenario = JsonSerializer.Deserialize<Scenario>(text, Json);
        }
        catch (JsonException ex)
        {
            // The walk above catches what a user can get wrong; this names the place without the serializer's type names.
            throw new FormatException($"{name}: the value at {ex.Path ?? "$"} cannot be read");
        }

        if (scenario is null)
        {
            throw new FormatException($"{name} is empty");
        }

        return scenario.Validate() is { } bad ? throw new FormatException($"{name}: {bad}") : scenario;
    }

    /// <summary>
    /// Every field a scenario file may hold, by its path (<c>link.rtt_ms</c>): what the example file documents.
    /// </summary>
    public static IReadOnlyList<string> FieldPaths()
    {
        var paths = new List<string>();
        void Walk(Type type, string prefix)
        {
            foreach (var p in Settable(type))
            {
                if (IsRecord(p.PropertyType))
                {
                    Walk(p.PropertyType, prefix + p.Name + ".");
                }
                else
                {
                    paths.Add(prefix + p.Name);
                }
            }
        }

        Walk(typeof(Scenario), "");
        return paths;
    }

    /// <summary>Checks the shape of <paramref name="element"/> against <paramref name="type"/>; returns the first problem.</summary>
    private static string? Check(JsonElement element, Type type, string path)
    {
        var where = path.Length == 0 ? "the file" : path;
        if (element.ValueKind != JsonValueKind.Object)
        {
            return $"{where} must be an object {{ ... }}, got {Kind(element)}";
        }

        var fields = Settable(type).ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            var field = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
            if (!fields.TryGetValue(property.Name, out var info))
            {
                var guess = fields.Keys.Select(k => (Key: k, Distance: EditDistance.Between(k, property.Name))).Where(g => g.Distance <= 3).OrderBy(g => g.Distance).Select(g => g.Key).FirstOrDefault();
                var prefix = path.Length == 0 ? "" : path + ".";
                return guess is not null
                    ? $"unknown field {field}; did you mean {prefix}{guess}?"
                    : $"unknown field {field}; {(path.Length == 0 ? "a scenario" : path)} takes {string.Join(", ", fields.Keys)}";
            }

            var problem = CheckValue(property.Value, info.PropertyType, field);
            if (problem is not null)
            {
                return problem;
            }
        }

        return null;
    }

    private static string? CheckValue(JsonElement value, Type type, string field)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        if (IsRecord(t))
        {
            return Check(value, t, field);
        }

        if (t == typeof(SimMode))
        {
            return value.ValueKind == JsonValueKind.String && SimModes.TryParse(value.GetString(), out _)
                ? null
                : $"{field} must be one of {string.Join(", ", SimModes.All.Select(m => m.Name()))}, got {Kind(value)}";
        }

        if (t == typeof(bool))
        {
            return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : $"{field} must be true or false, got {Kind(value)}";
        }

        if (t == typeof(int))
        {
            return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out _) ? null : $"{field} must be a whole number, got {Kind(value)}";
        }

        if (t == typeof(ulong))
        {
            return value.ValueKind == JsonValueKind.Number && value.TryGetUInt64(out _) ? null : $"{field} must be a whole number from 0 to 2^64-1, got {Kind(value)}";
        }

        if (t == typeof(double))
        {
            return value.ValueKind == JsonValueKind.Number ? null : $"{field} must be a number, got {Kind(value)}";
        }

        if (t == typeof(IReadOnlyList<double>))
        {
            return value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.Number)
                ? null
                : $"{field} must be a list of numbers [0.8, 0.7], got {Kind(value)}";
        }

        return null;
    }

    /// <summary>The fields of <paramref name="type"/> a file can set (computed properties such as TokenId are not).</summary>
    private static IEnumerable<JsonPropertyInfo> Settable(Type type) => Json.GetTypeInfo(type).Properties.Where(p => p.Set is not null);

    private static bool IsRecord(Type t) => t.IsClass && t != typeof(string) && t.Namespace == typeof(Scenario).Namespace;

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => $"\"{Truncate(value.GetString() ?? "")}\"",
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => "null",
    };

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "...";


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

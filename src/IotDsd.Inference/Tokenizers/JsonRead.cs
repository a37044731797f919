using System.Text.Json;

namespace IotDsd.Inference.Tokenizers;

/// <summary>Typed reads of a tokenizer file's JSON that fail with a <see cref="TokenizerFormatException"/>.</summary>
internal readonly struct JsonRead(string file)
{
    public string File { get; } = file;

    public TokenizerFormatException Error(string problem) => new(File, problem);

    public static bool IsAbsent(JsonElement e) => e.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null;

    public JsonElement Get(JsonElement obj, string name, string where)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw Error($"{where} must be an object");
        return obj.TryGetProperty(name, out var v) ? v : default;
    }

    public string Type(JsonElement component, string where)
    {
        if (component.ValueKind != JsonValueKind.Object) throw Error($"{where} must be an object");
        if (!component.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String) throw Error($"{where} has no \"type\"");
        return t.GetString()!;
    }

    public string String(JsonElement obj, string name, string where, string? fallback = null)
    {
        var v = Get(obj, name, where);
        if (IsAbsent(v) && fallback is not null) return fallback;
        if (v.ValueKind != JsonValueKind.String) throw Error($"{where}.{name} must be a string");
        return v.GetString()!;
    }

    public string? OptionalString(JsonElement obj, string name, string where)
    {
        var v = Get(obj, name, where);
        if (IsAbsent(v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw Error($"{where}.{name} must be a string");
        return v.GetString();
    }

    public bool Bool(JsonElement obj, string name, string where, bool fallback)
    {
        var v = Get(obj, name, where);
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Undefined or JsonValueKind.Null => fallback,
            _ => throw Error($"{where}.{name} must be true or false"),
        };
    }

    public int Int(JsonElement obj, string name, string where, int? fallback = null)
    {
        var v = Get(obj, name, where);
        if (IsAbsent(v) && fallback is int f) return f;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i)) throw Error($"{where}.{name} must be an integer");
        return i;
    }

    public JsonElement.ArrayEnumerator Array(JsonElement obj, string name, string where)
    {
        var v = Get(obj, name, where);
        if (v.ValueKind != JsonValueKind.Array) throw Error($"{where}.{name} must be an array");
        return v.EnumerateArray();
    }

    /// <summary>A Split/Replace pattern: <c>{"String": s}</c> (literal) or <c>{"Regex": r}</c>.</summary>
    public OnigRegex Pattern(JsonElement obj, string where)
    {
        var p = Get(obj, "pattern", where);
        if (p.ValueKind != JsonValueKind.Object) throw Error($"{where}.pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}");
        if (p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String)
        {
            if (s.GetString()!.Length == 0) throw Error($"{where}.pattern.String is empty");
            return OnigRegex.Literal(s.GetString()!);
        }
        if (p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String)
        {
            try
            {
                return OnigRegex.Create(r.GetString()!);
            }
            catch (ArgumentException e)
            {
                throw new TokenizerFormatException(File, $"{where}.pattern.Regex does not compile in .NET: {e.Message.ReplaceLineEndings(" ")}", e);
            }
        }
        throw Error($"{where}.pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}");
    }
}

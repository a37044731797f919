namespace IotDsd.Hosting;

/// <summary>
/// The execution-provider settings of a role (<c>Models:*</c>), checked: each provider is empty, cpu or cuda. Empty
/// values are returned as null, so the environment and then the common provider decide.
/// </summary>
public sealed record ModelSettings(string? Provider, string? DraftProvider, string? TargetProvider, string? ProviderLibrary)
{
    /// <summary>Reads the provider settings that <paramref name="catalog"/> holds; a bad value is a problem of <paramref name="c"/>.</summary>
    internal static ModelSettings Read(LayeredConfiguration c, IReadOnlyList<Setting> catalog) => new(
        Kind(c, Settings.Provider, catalog),
        Kind(c, Settings.DraftProvider, catalog),
        Kind(c, Settings.TargetProvider, catalog),
        catalog.Contains(Settings.ProviderLibrary) ? Empty(c.String(Settings.ProviderLibrary)) : null);

    /// <summary>True for the provider names the engine knows (cpu, cuda; gpu is read as cuda); empty means unset.</summary>
    public static bool IsKnown(string? text) => text?.Trim().ToLowerInvariant() is null or "" or "cpu" or "cuda" or "gpu";

    private static string? Kind(LayeredConfiguration c, Setting s, IReadOnlyList<Setting> catalog)
    {
        if (!catalog.Contains(s)) return null;
        var text = Empty(c.String(s));
        if (!IsKnown(text)) c.Problem(s, "must be cpu or cuda");
        return text;
    }

    private static string? Empty(string? text) => string.IsNullOrWhiteSpace(text) ? null : text;
}

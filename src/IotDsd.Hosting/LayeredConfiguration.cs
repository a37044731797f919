using IotDsd.Contracts.Text;
using System.Globalization;
using IotDsd.Messaging.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.Configuration.Memory;

namespace IotDsd.Hosting;

/// <summary>
/// A role's settings, layered in the usual .NET order — defaults, then the JSON config file (<c>--config</c> or
/// <c>IOTDSD_CONFIG</c>), then <c>IOTDSD_*</c> environment variables, then command-line flags — and read with
/// validation that names the setting, where its value came from, and how to fix it. Every problem is collected;
/// <see cref="ThrowIfInvalid"/> reports them all at once.
/// </summary>
internal sealed class LayeredConfiguration
{
    public const string ConfigFileVariable = "IOTDSD_CONFIG";
    private readonly IConfigurationRoot _root;
    private readonly List<string> _errors = [];
    private readonly List<ConfigEntry> _entries = [];

    private LayeredConfiguration(IConfigurationRoot root, string? file)
    {
        _root = root;
        File = file;
    }

    public string? File { get; }

    /// <summary>Settings read so far, with their sources.</summary>
    public IReadOnlyList<ConfigEntry> Entries => _entries;

    /// <summary>
    /// Layers the defaults, the JSON file (<paramref name="file"/>, else <c>IOTDSD_CONFIG</c>), the environment and the
    /// values given as flags (<paramref name="given"/>, by setting key); a file that cannot be used throws a
    /// <see cref="ConfigurationException"/>.
    /// </summary>
    public static LayeredConfiguration Build(string? file, IReadOnlyDictionary<string, string?> given, IReadOnlyList<Setting> catalog)
    {
        file ??= Environment.GetEnvironmentVariable(ConfigFileVariable);
        var builder = new ConfigurationBuilder();
        if (!string.IsNullOrEmpty(file))
        {
            file = Path.GetFullPath(file);
            if (Directory.Exists(file))
            {
                throw new ConfigurationException($"config file '{file}' is a directory, not a JSON file; fix --config or {ConfigFileVariable}");
            }

            if (!System.IO.File.Exists(file))
            {
                throw new ConfigurationException($"config file '{file}' does not exist; fix --config or {ConfigFileVariable}");
            }

            try
            {
                using var readable = System.IO.File.OpenRead(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new ConfigurationException($"config file '{file}' cannot be read: {ex.Message.TrimEnd('.')}; fix its permissions, --config or {ConfigFileVariable}");
            }

            builder.AddJsonFile(file, optional: false, reloadOnChange: false);
        }

        builder.AddEnvironmentVariables("IOTDSD_");
        builder.AddInMemoryCollection(given);
        IConfigurationRoot root;
        try
        {
            root = builder.Build();
        }
        catch (InvalidDataException ex)
        {
            throw new ConfigurationException($"config file '{file}' is not valid JSON: {ex.GetBaseException().Message}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"config file '{file}' cannot be read: {ex.Message.TrimEnd('.')}; fix its permissions, --config or {ConfigFileVariable}");
        }

        var layered = new LayeredConfiguration(root, file);
        layered.RejectUnknownKeys(catalog);
        return layered;
    }

    /// <summary>Keys in our sections that are no setting are mistakes (a typo silently ignored is worse than an error).</summary>
    private void RejectUnknownKeys(IReadOnlyList<Setting> catalog)
    {
        var known = catalog.Select(s => s.Key).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var sections = known.Select(k => k[..k.IndexOf(':', StringComparison.Ordinal)]).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, _) in _root.AsEnumerable())
        {
            var colon = key.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && sections.Contains(key[..colon]) && !known.Contains(key) && _root.GetSection(key).GetChildren().Any() is false)
            {
                var guess = known.FirstOrDefault(k => k.StartsWith(key[..colon], StringComparison.OrdinalIgnoreCase)
                    && EditDistance.Between(k, key, ignoreCase: true) <= 3);
                _errors.Add($"{key} (from {SourceOf(key, null)}) is not a setting{(guess is null ? "" : $"; did you mean {guess}?")} (the settings are listed in docs/operations.md)");
            }
        }
    }

    /// <summary>The raw value and where it came from; null when only the default applies.</summary>
    private (string? Value, string Source) Raw(Setting s)
    {
        var value = _root[s.Key];
        var source = value is null ? "default" : SourceOf(s.Key, s);

        // An empty environment variable or file value means "not set"; an empty flag was given on purpose and is checked.
        return (string.IsNullOrWhiteSpace(value) && !source.StartsWith("flag", StringComparison.Ordinal) ? null : value?.Trim(), source);
    }

    private string SourceOf(string key, Setting? s)
    {
        foreach (var provider in _root.Providers.Reverse())
        {
            if (provider.TryGet(key, out _))
            {
                return provider switch
                {
                    MemoryConfigurationProvider => $"flag {s?.Flag}",
                    EnvironmentVariablesConfigurationProvider => $"env {s?.EnvironmentVariable ?? "IOTDSD_" + key.Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant()}",
                    JsonConfigurationProvider => $"file {File}",
                    _ => provider.ToString() ?? "?",
                };
            }
        }

        return "default";
    }

    private void Record(Setting s, string? value, string source) => _entries.Add(new ConfigEntry(s.Key, value, source, s.Secret));

    private void Fail(Setting s, string? value, string source, string problem) =>
        _errors.Add($"{s.Key} = '{(s.Secret ? ConfigEntry.Redacted : value)}' (from {source}) {problem}; set {s.Places}");

    /// <summary>A string setting; <paramref name="fallback"/> when unset.</summary>
    public string? String(Setting s, string? fallback = null)
    {
        var (value, source) = Raw(s);
        Record(s, value ?? fallback, source);
        return value ?? fallback;
    }

    public int Int(Setting s, int min, int max) => (int)Number(s, min, max, integer: true);

    public double Double(Setting s, double min, double max) => Number(s, min, max, integer: false);

    public TimeSpan Millis(Setting s, double min, double max) => TimeSpan.FromMilliseconds(Number(s, min, max, integer: false));

    public bool Bool(Setting s)
    {
        var (value, source) = Raw(s);
        var text = value ?? s.Default;
        Record(s, text, source);
        if (bool.TryParse(text, out var b))
        {
            return b;
        }

        Fail(s, text, source, "must be true or false");
        return bool.Parse(s.Default);
    }

    private double Number(Setting s, double min, double max, bool integer)
    {
        var (value, source) = Raw(s);
        var text = value ?? s.Default;
        Record(s, text, source);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) || double.IsNaN(number))
        {
            Fail(s, text, source, $"is not a number");
        }
        else if (integer && number != Math.Floor(number))
        {
            Fail(s, text, source, "must be a whole number");
        }
        else if (number < min || number > max)
        {
            Fail(s, text, source, string.Create(CultureInfo.InvariantCulture, $"must be between {min} and {max}"));
        }
        else
        {
            return number;
        }

        return double.Parse(s.Default, CultureInfo.InvariantCulture);
    }

    /// <summary>Parses a setting with <paramref name="parse"/>, which returns the value or a problem.</summary>
    public T? Parsed<T>(Setting s, Func<string?, (T? Value, string? Problem)> parse, string? fallback = null)
    {
        var (value, source) = Raw(s);
        var text = value ?? fallback;
        Record(s, text, source);
        var (result, problem) = parse(text);
        if (problem is not null)
        {
            Fail(s, text, source, problem);
        }

        return result;
    }

    /// <summary>Reports a problem found by a check across settings (or by the options' own validation).</summary>
    public void Problem(Setting s, string problem)
    {
        var entry = _entries.LastOrDefault(e => e.Key == s.Key);
        Fail(s, entry?.Value, entry?.Source ?? "default", problem);
    }

    public void ThrowIfInvalid()
    {
        if (_errors.Count > 0)
        {
            throw new ConfigurationException($"invalid configuration: {string.Join("; ", _errors)}");
        }
    }

}

/// <summary>A configuration that cannot be used: one line naming every problem and how to fix it.</summary>
public sealed class ConfigurationException(string message) : Exception(message);

using System.CommandLine;
using IotDsd.Hosting;

namespace IotDsd.Cli.Commands;

/// <summary>The command-line layer of a role's settings: <c>--config</c> and a flag for each flagged setting.</summary>
internal static class SettingOptions
{
    /// <summary>Command-line options for <paramref name="settings"/>: <c>--config</c>, a flag for each switch (an on/off
    /// setting: <c>--tls</c>, which also takes an explicit <c>true</c> or <c>false</c>), and a valued option for each other
    /// flagged setting.</summary>
    public static (Option<string?> Config, Dictionary<Setting, Option> Flags) Create(IEnumerable<Setting> settings)
    {
        var config = new Option<string?>("--config") { Description = $"JSON settings file (also {LayeredConfiguration.ConfigFileVariable}); environment variables and flags override it." };
        var flags = new Dictionary<Setting, Option>();
        foreach (var s in settings.Where(s => s.Flag is not null))
        {
            var def = s.Default.Length == 0 ? "" : $" Default: {s.Default}.";
            var description = $"{s.Description}{def} [{s.Key}, {s.EnvironmentVariable}]";
            flags[s] = s.IsSwitch
                ? new Option<bool>(s.Flag!) { Description = description, Arity = ArgumentArity.ZeroOrOne }
                : new Option<string?>(s.Flag!) { Description = description };
        }

        return (config, flags);
    }

    /// <summary>The layered settings, with the flags given on this command line as the top layer.</summary>
    public static LayeredConfiguration Build(ParseResult result, Option<string?> configOption, IReadOnlyDictionary<Setting, Option> flags, IReadOnlyList<Setting> catalog)
    {
        var given = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (setting, option) in flags)
        {
            if (result.GetResult(option) is not { Implicit: false })
            {
                continue;
            }

            var value = option switch
            {
                Option<bool> flag => result.GetValue(flag) ? "true" : "false",
                Option<string?> valued => result.GetValue(valued),
                _ => null,
            };
            if (value is not null)
            {
                given[setting.Key] = value;
            }
        }

        return LayeredConfiguration.Build(result.GetValue(configOption), given, catalog);
    }
}

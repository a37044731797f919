using System.Globalization;

namespace IotDsd.Cli.Commands;

/// <summary>Comma-separated option values (`--batches 1,4,16`): every part must parse and be in range, else one line naming the option.</summary>
internal static class ListArgument
{
    public static int[] Ints(string text, string option, int min, int max, bool ascending = false) =>
        Parse(text, option, $"whole numbers between {min} and {max}{(ascending ? " in ascending order" : "")}", ascending,
            p => (int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max, v));

    public static double[] Doubles(string text, string option, string takes, Func<double, bool> valid) =>
        Parse(text, option, takes, false, p => (double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && valid(v), v));

    private static T[] Parse<T>(string text, string option, string takes, bool ascending, Func<string, (bool Ok, T Value)> parse)
        where T : IComparable<T>
    {
        var values = new List<T>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var (ok, value) = parse(part);
            values.Add(ok && !(ascending && values.Count > 0 && value.CompareTo(values[^1]) <= 0)
                ? value
                : throw new CliError($"{option} must list {takes}, got '{part}'"));
        }

        return values.Count > 0 ? [.. values] : throw new CliError($"{option} must list at least one value");
    }
}

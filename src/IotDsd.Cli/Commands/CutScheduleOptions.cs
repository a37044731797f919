using System.CommandLine;
using System.Globalization;
using IotDsd.Messaging.LinkEmulation;

namespace IotDsd.Cli.Commands;

/// <summary>The seeded cut-schedule flags the link commands share: <c>--seed</c>, <c>--cuts</c>, <c>--cut-ms</c>, <c>--up-ms</c>.</summary>
internal sealed class CutScheduleOptions(string seedDescription)
{
    public Option<int> Seed { get; } = new("--seed") { Description = seedDescription, DefaultValueFactory = _ => 1 };
    public Option<int> Cuts { get; } = new("--cuts") { Description = "Cut the link this many times on a random schedule, then keep it up." };
    public Option<string> CutMs { get; } = new("--cut-ms") { Description = "Outage length range MIN-MAX in ms.", DefaultValueFactory = _ => "1000-10000" };
    public Option<string> UpMs { get; } = new("--up-ms") { Description = "Time up between outages, MIN-MAX in ms.", DefaultValueFactory = _ => "1000-5000" };

    public void AddTo(Command command)
    {
        command.Add(Seed);
        command.Add(Cuts);
        command.Add(CutMs);
        command.Add(UpMs);
    }

    /// <summary>The validated schedule; a <see cref="CliError"/> naming the flag otherwise.</summary>
    public LinkChaos Parse(ParseResult result, double halfOpenFraction = 0)
    {
        var (cutMin, cutMax) = Range(result.GetValue(CutMs)!, "--cut-ms");
        var (upMin, upMax) = Range(result.GetValue(UpMs)!, "--up-ms");
        var chaos = new LinkChaos
        {
            Count = result.GetValue(Cuts),
            CutMin = cutMin,
            CutMax = cutMax,
            UpMin = upMin,
            UpMax = upMax,
            HalfOpenFraction = halfOpenFraction,
            Seed = result.GetValue(Seed),
        };
        return chaos.Validate() is { } bad ? throw new CliError(bad) : chaos;
    }

    internal static (TimeSpan Min, TimeSpan Max) Range(string text, string flag)
    {
        var parts = text.Split('-');
        if (parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var min)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var max)
            && min >= 0 && max >= min)
        {
            return (TimeSpan.FromMilliseconds(min), TimeSpan.FromMilliseconds(max));
        }

        throw new CliError($"{flag} must be MIN-MAX in milliseconds with 0 <= MIN <= MAX, got '{text}'");
    }
}

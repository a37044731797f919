using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Edge.Hosting;
using EmulatedDirection = IotDsd.Messaging.LinkEmulation.LinkProfile;

namespace IotDsd.Testbed.Benches;

/// <summary>One emulated WAN link of Table B: one-way delay and the bandwidth of each direction.</summary>
internal sealed record WanLink(string Name, double OneWayMs, long UpBytesPerSecond, long DownBytesPerSecond)
{
    /// <summary>A cellular-like link: 2 Mbit/s up, 10 Mbit/s down, 30 ms each way.</summary>
    public static readonly WanLink Cellular = new("cellular", 30, 250_000, 1_250_000);

    /// <summary>A narrowband link: 64 kbit/s each way, 100 ms each way.</summary>
    public static readonly WanLink Narrowband = new("narrowband", 100, 8_000, 8_000);

    public static readonly WanLink[] All = [Cellular, Narrowband];

    public EmulatedDirection Up => new() { Delay = TimeSpan.FromMilliseconds(OneWayMs), BytesPerSecond = UpBytesPerSecond };

    public EmulatedDirection Down => new() { Delay = TimeSpan.FromMilliseconds(OneWayMs), BytesPerSecond = DownBytesPerSecond };

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Name}: {OneWayMs} ms one way, {UpBytesPerSecond * 8 / 1000.0:0.###} kbit/s up, {DownBytesPerSecond * 8 / 1000.0:0.###} kbit/s down");
}

/// <summary>What <c>iotdsd bench wan</c> measures: which tables, cells and limits.</summary>
internal sealed record WanPlan
{
    public bool TableA { get; init; } = true;
    public bool TableB { get; init; } = true;

    /// <summary>Table A's one-way delays, milliseconds.</summary>
    public IReadOnlyList<int> Delays { get; init; } = [0, 10, 25, 50, 100];

    /// <summary>Tokens per Table A cell.</summary>
    public int TokensA { get; init; } = 64;

    /// <summary>Tokens per Table B cell.</summary>
    public int TokensB { get; init; } = 24;

    public IReadOnlyList<int> Vocabs { get; init; } = [256, 32_000, 152_064];
    public IReadOnlyList<WanLink> Links { get; init; } = WanLink.All;
    public IReadOnlyList<DecodingMode> Modes { get; init; } = [DecodingMode.Greedy, DecodingMode.Dsd, DecodingMode.Dssd, DecodingMode.Rsr];

    /// <summary>Table A's compute-realistic target preset, or null to measure the shipped pair alone.</summary>
    public string? Realistic { get; init; } = "small";

    /// <summary>Longest one Table B cell may run; the device's transfer timeout cap is half of it, so it decides first.</summary>
    public TimeSpan CellLimit { get; init; } = TimeSpan.FromSeconds(30);

    public int Gamma { get; init; } = 4;

    /// <summary>Sampling temperature of dsd, dssd and rsr cells (greedy is T = 0).</summary>
    public float Temperature { get; init; } = 0.8f;

    public ulong Seed { get; init; } = 11;
    public string Prompt { get; init; } = "Once upon a time";

    /// <summary>The device's options for a Table B cell (and the base of both Table A shapes).</summary>
    public EdgeOptions Device(EdgeOptions o) => o with
    {
        TransferTimeoutCap = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(5).Ticks, CellLimit.Ticks / 2)),
        GiveUpAfter = CellLimit * 2,
    };

    /// <summary>Parses the command's arguments; returns the plan, or a one-line error naming the option.</summary>
    public static (WanPlan? Plan, string? Error) Parse(
        string tables, string delays, string vocabs, string links, string modes, int tokensA, int tokensB, double cellLimitS, string realistic)
    {
        var t = Split(tables);
        if (t.Length == 0 || t.Any(x => x is not ("a" or "b")))
        {
            return (null, $"--tables must list a and/or b, got '{tables}'");
        }

        if (!TryInts(delays, 0, 10_000, out var d))
        {
            return (null, $"--delays must list one-way delays of 0-10000 ms, got '{delays}'");
        }

        if (!TryInts(vocabs, 256, 1 << 18, out var v))
        {
            return (null, $"--vocabs must list vocabulary sizes of 256-{1 << 18}, got '{vocabs}'");
        }

        var l = new List<WanLink>();
        foreach (var name in Split(links))
        {
            if (WanLink.All.FirstOrDefault(x => x.Name == name) is not { } link)
            {
                return (null, $"--links must list {string.Join(" and/or ", WanLink.All.Select(x => x.Name))}, got '{links}'");
            }

            l.Add(link);
        }

        var m = new List<DecodingMode>();
        foreach (var name in Split(modes))
        {
            if (!DecodingModes.TryParse(name, out var mode) || mode is not (DecodingMode.Greedy or DecodingMode.Dsd or DecodingMode.Dssd or DecodingMode.Rsr))
            {
                return (null, $"--modes must list greedy, dsd, dssd and/or rsr, got '{modes}'");
            }

            m.Add(mode);
        }

        if (tokensA is < 1 or > 100_000 || tokensB is < 1 or > 100_000)
        {
            return (null, $"--tokens and --cell-tokens must be between 1 and 100000, got {tokensA} and {tokensB}");
        }

        if (!(cellLimitS is >= 1 and <= 3600))
        {
            return (null, string.Create(CultureInfo.InvariantCulture, $"--cell-limit-s must be between 1 and 3600, got {cellLimitS}"));
        }

        if (realistic != "none" && !WanModels.RealisticPresets.Contains(realistic))
        {
            return (null, $"--realistic must be {string.Join(", ", WanModels.RealisticPresets)} or none, got '{realistic}'");
        }

        if (l.Count == 0 || m.Count == 0)
        {
            return (null, "--links and --modes must name at least one each");
        }

        return (new WanPlan
        {
            TableA = t.Contains("a"),
            TableB = t.Contains("b"),
            Delays = d,
            Vocabs = v,
            Links = l,
            Modes = m,
            TokensA = tokensA,
            TokensB = tokensB,
            CellLimit = TimeSpan.FromSeconds(cellLimitS),
            Realistic = realistic == "none" ? null : realistic,
        }, null);
    }

    private static string[] Split(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => s.ToLowerInvariant()).ToArray();

    private static bool TryInts(string text, int min, int max, out int[] values)
    {
        var parts = Split(text);
        values = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]) || values[i] < min || values[i] > max)
            {
                return false;
            }
        }

        return parts.Length > 0;
    }
}

using System.Globalization;
using System.Net;
using System.Text;

namespace IotDsd.Sim.Plots;

/// <summary>One named line or bar group.</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>A small SVG writer: line charts (optionally log-scaled y) and grouped bar charts, axes, ticks and a legend.</summary>
public static class SvgChart
{
    private const int Width = 760, Height = 440, Left = 80, Right = 170, Top = 40, Bottom = 60;
    private static readonly string[] Colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

    public static string Lines(string title, string xLabel, string yLabel, IReadOnlyList<Series> series, bool logX = false, bool logY = false)
    {
        var points = series.SelectMany(s => s.Points).ToList();
        var (x0, x1) = Range(points.Select(p => p.X), logX);
        var (y0, y1) = Range(points.Select(p => p.Y), logY, fromZero: !logY);
        var svg = Begin(title, xLabel, yLabel);
        Axes(svg, x0, x1, y0, y1, logX, logY, null);
        for (var i = 0; i < series.Count; i++)
        {
            var colour = Colours[i % Colours.Length];
            var path = string.Join(" ", series[i].Points.Select((p, j) => F($"{(j == 0 ? 'M' : 'L')}{X(p.X, x0, x1, logX):0.#},{Y(p.Y, y0, y1, logY):0.#}")));
            svg.Append(F($"<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n"));
            foreach (var p in series[i].Points)
            {
                svg.Append(F($"<circle cx=\"{X(p.X, x0, x1, logX):0.#}\" cy=\"{Y(p.Y, y0, y1, logY):0.#}\" r=\"3\" fill=\"{colour}\"/>\n"));
            }

            Legend(svg, i, series[i].Name, colour);
        }

        return End(svg);
    }

    /// <summary>Bars: one group per category, one bar per series (the series' points are indexed by category).</summary>
    public static string Bars(string title, string yLabel, IReadOnlyList<string> categories, IReadOnlyList<Series> series, bool logY = false)
    {
        var (y0, y1) = Range(series.SelectMany(s => s.Points).Select(p => p.Y), logY, fromZero: !logY);
        var svg = Begin(title, "", yLabel);
        Axes(svg, 0, categories.Count, y0, y1, false, logY, categories);
        var group = (Width - Left - Right) / (double)categories.Count;
        var bar = group * 0.8 / series.Count;
        for (var s = 0; s < series.Count; s++)
        {
            var colour = Colours[s % Colours.Length];
            foreach (var (x, y) in series[s].Points)
            {
                var left = Left + (x * group) + (group * 0.1) + (s * bar);
                var top = Y(y, y0, y1, logY);
                svg.Append(F($"<rect x=\"{left:0.#}\" y=\"{top:0.#}\" width=\"{bar:0.#}\" height=\"{Math.Max(0, Height - Bottom - top):0.#}\" fill=\"{colour}\"><title>{y:0.##}</title></rect>\n"));
            }

            Legend(svg, s, series[s].Name, colour);
        }

        return End(svg);
    }

    private static StringBuilder Begin(string title, string xLabel, string yLabel)
    {
        var svg = new StringBuilder();
        svg.Append(F($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n"));
        svg.Append(F($"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n"));
        svg.Append(F($"<text x=\"{(Width - Right + Left) / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Esc(title)}</text>\n"));
        svg.Append(F($"<text x=\"{(Width - Right + Left) / 2}\" y=\"{Height - 15}\" text-anchor=\"middle\">{Esc(xLabel)}</text>\n"));
        svg.Append(F($"<text transform=\"translate(18 {(Height - Bottom + Top) / 2}) rotate(-90)\" text-anchor=\"middle\">{Esc(yLabel)}</text>\n"));
        return svg;
    }

    private static string End(StringBuilder svg) => svg.Append("</svg>\n").ToString();

    private static void Axes(StringBuilder svg, double x0, double x1, double y0, double y1, bool logX, bool logY, IReadOnlyList<string>? categories)
    {
        svg.Append(F($"<path d=\"M{Left},{Top} V{Height - Bottom} H{Width - Right}\" fill=\"none\" stroke=\"black\"/>\n"));
        foreach (var t in Ticks(y0, y1, logY))
        {
            var y = Y(t, y0, y1, logY);
            svg.Append(F($"<line x1=\"{Left - 4}\" x2=\"{Width - Right}\" y1=\"{y:0.#}\" y2=\"{y:0.#}\" stroke=\"#ddd\"/><text x=\"{Left - 6}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{Label(t)}</text>\n"));
        }

        if (categories is not null)
        {
            var group = (Width - Left - Right) / (double)categories.Count;
            for (var i = 0; i < categories.Count; i++)
            {
                svg.Append(F($"<text x=\"{Left + ((i + 0.5) * group):0.#}\" y=\"{Height - Bottom + 18}\" text-anchor=\"middle\">{Esc(categories[i])}</text>\n"));
            }

            return;
        }

        foreach (var t in Ticks(x0, x1, logX))
        {
            var x = X(t, x0, x1, logX);
            svg.Append(F($"<line x1=\"{x:0.#}\" x2=\"{x:0.#}\" y1=\"{Height - Bottom}\" y2=\"{Height - Bottom + 4}\" stroke=\"black\"/><text x=\"{x:0.#}\" y=\"{Height - Bottom + 18}\" text-anchor=\"middle\">{Label(t)}</text>\n"));
        }
    }

    private static void Legend(StringBuilder svg, int i, string name, string colour)
    {
        var y = Top + 10 + (i * 20);
        svg.Append(F($"<rect x=\"{Width - Right + 15}\" y=\"{y - 9}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{Width - Right + 32}\" y=\"{y + 1}\">{Esc(name)}</text>\n"));
    }

    private static (double, double) Range(IEnumerable<double> values, bool log, bool fromZero = false)
    {
        var list = values.Where(v => !log || v > 0).DefaultIfEmpty(1).ToList();
        double lo = list.Min(), hi = list.Max();
        if (log)
        {
            return (Math.Pow(10, Math.Floor(Math.Log10(lo))), Math.Pow(10, Math.Ceiling(Math.Log10(hi))));
        }

        if (fromZero)
        {
            lo = Math.Min(0, lo);
        }

        return hi <= lo ? (lo, lo + 1) : (lo, hi * 1.05);
    }

    private static IEnumerable<double> Ticks(double lo, double hi, bool log)
    {
        if (log)
        {
            for (var t = lo; t <= hi * 1.0001; t *= 10)
            {
                yield return t;
            }

            yield break;
        }

        var step = Math.Pow(10, Math.Floor(Math.Log10((hi - lo) / 5)));
        while ((hi - lo) / step > 10)
        {
            step *= 2;
        }

        for (var t = Math.Ceiling(lo / step) * step; t <= hi; t += step)
        {
            yield return t;
        }
    }

    private static double X(double v, double lo, double hi, bool log) =>
        Left + ((Width - Left - Right) * (log ? Math.Log10(Math.Max(v, lo) / lo) / Math.Log10(hi / lo) : (v - lo) / (hi - lo)));

    private static double Y(double v, double lo, double hi, bool log) =>
        Height - Bottom - ((Height - Top - Bottom) * (log ? Math.Log10(Math.Max(v, lo) / lo) / Math.Log10(hi / lo) : (v - lo) / (hi - lo)));

    private static string Label(double v) => v >= 10_000 ? v.ToString("0.#e0", CultureInfo.InvariantCulture) : v.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Esc(string s) => WebUtility.HtmlEncode(s);

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace IotDsd.Inference.Tokenizers;

/// <summary>
/// NFC, NFD, NFKC and NFKD in managed code from an embedded table (<c>make-normalization-data.py</c>), because
/// <see cref="string.Normalize(NormalizationForm)"/> does nothing in the invariant-globalization mode this project runs in.
/// </summary>
internal static class UnicodeNormalization
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private sealed class Tables
    {
        public readonly Dictionary<int, int[]> Canonical = [];
        public readonly Dictionary<int, int[]> Compatibility = [];
        public readonly Dictionary<int, byte> CombiningClass = [];
        public readonly Dictionary<long, int> Compose = [];
    }

    private static readonly Lazy<Tables> Data = new(Load);

    private static Tables Load()
    {
        var t = new Tables();
        using var stream = typeof(UnicodeNormalization).Assembly.GetManifestResourceStream("IotDsd.Inference.Tokenizers.normalization.txt.gz")
            ?? throw new InvalidOperationException("the Unicode normalization table is missing from the assembly");
        using var reader = new StreamReader(new GZipStream(stream, CompressionMode.Decompress), Encoding.ASCII);
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var f = line.Split(' ');
            int cp = int.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            switch (f[0])
            {
                case "D":
                case "K":
                    var seq = new int[f.Length - 2];
                    for (int i = 2; i < f.Length; i++) seq[i - 2] = int.Parse(f[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    (f[0] == "D" ? t.Canonical : t.Compatibility)[cp] = seq;
                    break;
                case "C":
                    t.CombiningClass[cp] = byte.Parse(f[2], CultureInfo.InvariantCulture);
                    break;
                case "P":
                    int second = int.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    t.Compose[Key(cp, second)] = int.Parse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    break;
            }
        }
        return t;
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    public static string Normalize(string text, NormalizationForm form)
    {
        bool ascii = true;
        foreach (var c in text)
        {
            if (c >= 0x80)
            {
                ascii = false;
                break;
            }
        }
        if (ascii) return text;
        var data = Data.Value;
        bool compat = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        var cps = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = CodePoints.At(text, i, out int width);
            i += width - 1;
            Decompose(cp, compat, data, cps);
        }
        Reorder(cps, data);
        if (form is NormalizationForm.FormC or NormalizationForm.FormKC) cps = Compose(cps, data);
        var sb = new StringBuilder(cps.Count);
        foreach (var cp in cps)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp); // a lone surrogate passes through
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    private static void Decompose(int cp, bool compat, Tables data, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (compat && data.Compatibility.TryGetValue(cp, out var k)) output.AddRange(k);
        else if (data.Canonical.TryGetValue(cp, out var d)) output.AddRange(d);
        else output.Add(cp);
    }

    private static int Ccc(int cp, Tables data) => data.CombiningClass.TryGetValue(cp, out var c) ? c : 0;

    /// <summary>Canonical ordering: a stable sort of each run of non-starters by combining class.</summary>
    private static void Reorder(List<int> cps, Tables data)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = Ccc(cps[i], data);
            if (cc == 0) continue;
            int j = i;
            while (j > 0 && Ccc(cps[j - 1], data) > cc)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
    }

    private static List<int> Compose(List<int> cps, Tables data)
    {
        var result = new List<int>(cps.Count);
        int starter = -1;
        int lastClass = 0;
        foreach (var cp in cps)
        {
            int cc = Ccc(cp, data);
            if (starter >= 0)
            {
                bool adjacent = result.Count - 1 == starter;
                if ((adjacent || (lastClass != 0 && lastClass < cc)) && TryCompose(result[starter], cp, data, out var composite))
                {
                    result[starter] = composite;
                    continue;
                }
            }
            if (cc == 0) starter = result.Count;
            lastClass = cc;
            result.Add(cp);
        }
        return result;
    }

    private static bool TryCompose(int a, int b, Tables data, out int composite)
    {
        if (a is >= LBase and < LBase + LCount && b is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
            return true;
        }
        if (a is >= SBase and < SBase + SCount && (a - SBase) % TCount == 0 && b is > TBase and < TBase + TCount)
        {
            composite = a + (b - TBase);
            return true;
        }
        return data.Compose.TryGetValue(Key(a, b), out composite);
    }
}

using System.Text;
using IotDsd.Inference.Ngram;

namespace IotDsd.Inference.Tests;

internal static class TestCorpus
{
    /// <summary>A slice of the embedded corpus, cut at a record separator: enough for small, fast models.</summary>
    public static byte[] Small(int approxBytes = 60_000)
    {
        var all = DefaultModels.Corpus.Span;
        var sep = "\n%\n"u8;
        int cut = all[approxBytes..].IndexOf(sep);
        return all[..(approxBytes + cut + sep.Length)].ToArray();
    }

    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}

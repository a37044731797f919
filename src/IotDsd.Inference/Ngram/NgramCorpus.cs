namespace IotDsd.Inference.Ngram;

/// <summary>Splits fortune-style text into records: lines holding only <c>%</c> separate records.</summary>
public static class NgramCorpus
{
    /// <summary>
    /// Returns the records of <paramref name="text"/>, each with its trailing newline; separator lines are dropped,
    /// and so are empty records. Carriage returns before a separator's newline are tolerated.
    /// </summary>
    public static List<byte[]> SplitRecords(ReadOnlySpan<byte> text)
    {
        var records = new List<byte[]>();
        int recordStart = 0, lineStart = 0;
        while (lineStart < text.Length)
        {
            int nl = text[lineStart..].IndexOf((byte)'\n');
            int lineEnd = nl < 0 ? text.Length : lineStart + nl + 1; // exclusive, includes '\n'
            var line = text[lineStart..lineEnd];
            if (IsSeparator(line))
            {
                if (lineStart > recordStart) records.Add(text[recordStart..lineStart].ToArray());
                recordStart = lineEnd;
            }
            lineStart = lineEnd;
        }
        if (text.Length > recordStart) records.Add(text[recordStart..].ToArray());
        return records;
    }

    private static bool IsSeparator(ReadOnlySpan<byte> line)
    {
        line = line.TrimEnd((byte)'\n').TrimEnd((byte)'\r');
        return line.Length == 1 && line[0] == (byte)'%';
    }
}

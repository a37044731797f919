using System.Diagnostics;

namespace IotDsd.Fuzz;

/// <summary>
/// One fuzz target: a decoder fed untrusted bytes. <see cref="Run"/> returns a short outcome signature (error code,
/// message type...) that steers the corpus; it may throw only the exception types the decoder documents.
/// </summary>
public sealed record FuzzTarget(string Name, IReadOnlyList<byte[]> Seeds, Func<byte[], string> Run, Func<Exception, bool> IsExpected);

/// <summary>A crash, hang or runaway allocation, with the input that caused it.</summary>
public sealed record FuzzFinding(string Target, string Kind, string Detail, byte[] Input)
{
    public override string ToString() => $"{Target}: {Kind}: {Detail}\n  input (hex): {Convert.ToHexString(Input.AsSpan(0, Math.Min(Input.Length, 512)))}";
}

/// <summary>What one run of a target did.</summary>
public sealed record FuzzReport(string Target, long Inputs, int CorpusSize, int Outcomes, long MaxAllocatedBytes, TimeSpan Slowest, TimeSpan Elapsed, IReadOnlyList<FuzzFinding> Findings);

/// <summary>
/// Mutation fuzzer with outcome feedback: an input whose outcome signature was not seen before joins the corpus, so
/// mutations reach deeper states (a body that decodes, a round that passes checks) without coverage instrumentation.
/// Per input it checks for unexpected exceptions, wall time over <see cref="HangThreshold"/> and allocations over
/// <see cref="AllocationBound"/>.
/// </summary>
public static class FuzzEngine
{
    public static readonly TimeSpan HangThreshold = TimeSpan.FromSeconds(1);

    /// <summary>Most bytes one input may cause to be allocated: generous, but far below what a length field could claim.</summary>
    public static long AllocationBound(int inputLength) => (4L << 20) + (256L * inputLength);

    private static byte[] _current = [];

    /// <summary>The input being executed now, for a watchdog that finds the run stuck.</summary>
    public static byte[] Current => Volatile.Read(ref _current);

    public static FuzzReport Run(FuzzTarget target, long iterations, int seed, int maxCorpus = 4096)
    {
        var mutator = new Mutator(seed);
        var corpus = new List<byte[]>(target.Seeds);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var findings = new List<FuzzFinding>();
        var findingKinds = new HashSet<string>(StringComparer.Ordinal);
        long maxAllocated = 0;
        var slowest = TimeSpan.Zero;
        var total = Stopwatch.StartNew();
        foreach (var s in target.Seeds)
        {
            Execute(s);
        }

        for (long i = 0; i < iterations; i++)
        {
            var parent = corpus[mutator.Random.Next(corpus.Count)];
            var other = corpus[mutator.Random.Next(corpus.Count)];
            var input = mutator.Mutate(parent, other);
            if (Execute(input) is { } signature && seen.Add(signature) && corpus.Count < maxCorpus)
            {
                corpus.Add(input);
            }
        }

        return new FuzzReport(target.Name, iterations + target.Seeds.Count, corpus.Count, seen.Count, maxAllocated, slowest, total.Elapsed, findings);

        string? Execute(byte[] input)
        {
            Volatile.Write(ref _current, input);
            var before = GC.GetAllocatedBytesForCurrentThread();
            var started = Stopwatch.GetTimestamp();
            string? signature = null;
            try
            {
                signature = target.Run(input);
            }
            catch (Exception ex) when (target.IsExpected(ex))
            {
                signature = "expected:" + ex.GetType().Name + ":" + ex.Message[..Math.Min(ex.Message.Length, 48)];
            }
            catch (Exception ex)
            {
                // One finding per exception type and site keeps the report readable.
                var site = $"{ex.GetType().FullName} at {ex.StackTrace?.Split('\n').FirstOrDefault()?.Trim()}";
                if (findingKinds.Add(site))
                {
                    findings.Add(new FuzzFinding(target.Name, "crash", $"{ex.GetType().Name}: {ex.Message} {site}", input));
                }
            }

            var elapsed = Stopwatch.GetElapsedTime(started);
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            maxAllocated = Math.Max(maxAllocated, allocated);
            slowest = elapsed > slowest ? elapsed : slowest;
            if (elapsed > HangThreshold && findingKinds.Add("hang"))
            {
                findings.Add(new FuzzFinding(target.Name, "hang", $"{elapsed.TotalMilliseconds:0} ms", input));
            }

            if (allocated > AllocationBound(input.Length) && findingKinds.Add("allocation"))
            {
                findings.Add(new FuzzFinding(target.Name, "allocation", $"{allocated} bytes for a {input.Length}-byte input", input));
            }

            return signature;
        }
    }
}

using System.Globalization;

namespace IotDsd.Testbed.Load;

/// <summary>
/// CPU time and resident memory of named processes over a load run, read from Linux's /proc (the broker and the
/// verifier when they run as separate processes; this process when they are embedded).
/// </summary>
internal sealed class ProcessWatch(IReadOnlyList<(string Name, int Pid)> processes)
{
    private const double TicksPerSecond = 100.0; // USER_HZ on every Linux ABI .NET supports
    private readonly List<(string Name, int Pid, double CpuStart)> _watched = [];
    private long _started;

    /// <summary>Parses <c>name=pid</c>.</summary>
    public static (string Name, int Pid) Parse(string spec)
    {
        var eq = spec.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0 || !int.TryParse(spec.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid <= 0)
        {
            throw new TestbedException($"--watch takes NAME=PID (for example broker=1234), got '{spec}'");
        }

        if (CpuSeconds(pid) is null)
        {
            throw new TestbedException($"--watch {spec}: no such process");
        }

        return (spec[..eq], pid);
    }

    /// <summary>Starts the measurement (after the warm-up).</summary>
    public void Start()
    {
        _started = TimeProvider.System.GetTimestamp();
        foreach (var (name, pid) in processes)
        {
            _watched.Add((name, pid, CpuSeconds(pid) ?? throw new TestbedException($"--watch {name}={pid}: no such process")));
        }
    }

    public IReadOnlyList<ProcessUsage> Stop()
    {
        var wall = TimeProvider.System.GetElapsedTime(_started).TotalSeconds;
        return [.. _watched.Select(w =>
        {
            var cpu = (CpuSeconds(w.Pid) ?? w.CpuStart) - w.CpuStart;
            return new ProcessUsage(w.Name, w.Pid, Math.Round(cpu, 2), Math.Round(wall <= 0 ? 0 : 100 * cpu / wall, 1), Math.Round(RssMb(w.Pid), 1));
        })];
    }

    /// <summary>utime + stime of a process, in seconds; null if it is gone.</summary>
    public static double? CpuSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (double.Parse(rest[11], CultureInfo.InvariantCulture) + double.Parse(rest[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Resident set size in MB (VmRSS); 0 if unknown.</summary>
    public static double RssMb(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return double.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) / 1024.0;
                }
            }
        }
        catch (IOException)
        {
        }

        return 0;
    }
}

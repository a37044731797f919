using System.Diagnostics;

namespace IotDsd.Tests.Infrastructure;

/// <summary>The repository the tests run from, and its scripts run as child processes.</summary>
internal static class Repository
{
    /// <summary>The folder holding IotDsd.sln, above the test binaries.</summary>
    public static string Root { get; } = Find();

    /// <summary>Runs a program to its end (at most three minutes); returns its exit code and stdout then stderr.</summary>
    public static async Task<(int Code, string Output)> RunAsync(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "IotDsd.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no IotDsd.sln above {AppContext.BaseDirectory}");
    }
}

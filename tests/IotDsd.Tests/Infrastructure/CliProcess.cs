using System.Diagnostics;

namespace IotDsd.Tests.Infrastructure;

/// <summary>The <c>iotdsd</c> executable as a real child process, with the test run's model cache and the n-gram pair.</summary>
public static class CliProcess
{
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "iotdsd.dll");

    public static Process Start(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["IOTDSD_MODEL_CACHE"] = Path.GetDirectoryName(Path.GetDirectoryName(TestEnvironment.DraftDir));
        // The processes run the byte n-gram pair the in-process references use, unless a test names another.
        psi.Environment["IOTDSD_PAIR"] = "ngram";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }

        return Process.Start(psi)!;
    }

    public static async Task<(int Code, string Out, string Err)> RunAsync(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var process = Start(environment, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary><c>iotdsd link</c> as a user runs it: a child process driven through stdin.</summary>
public sealed partial class LinkCommandTests
{
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "iotdsd.dll");

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll);
        psi.ArgumentList.Add("link");
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi)!;
    }

    [Fact]
    public async Task Link_StdinCommands_CutRestoreAndForward()
    {
        await using var echo = new EchoServer();
        using var process = Start("--listen", "0", "--upstream", $"127.0.0.1:{echo.Port}", "--delay-ms", "5");
        try
        {
            var banner = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var match = PortPattern().Match(banner ?? "");
            Assert.True(match.Success, $"unexpected banner '{banner}'");
            var port = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

            using (var client = new TcpClient())
            {
                await client.ConnectAsync("127.0.0.1", port);
                var stream = client.GetStream();
                await stream.WriteAsync(new byte[] { 42 });
                var b = new byte[1];
                await stream.ReadExactlyAsync(b).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                Assert.Equal(42, b[0]);
            }

            await process.StandardInput.WriteLineAsync("cut");
            Assert.StartsWith("cut;", await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
            await process.StandardInput.WriteLineAsync("delay 20 3");
            Assert.Contains("delay 20 ms, jitter 3 ms", await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
            await process.StandardInput.WriteLineAsync("restore");
            Assert.StartsWith("up;", await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
            await process.StandardInput.WriteLineAsync("bogus");
            Assert.StartsWith("commands:", await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Theory]
    [InlineData("--listen", "0", "--upstream", "nohost:0")]
    [InlineData("--listen", "70000", "--upstream", "127.0.0.1:1883")]
    [InlineData("--listen", "0", "--upstream", "127.0.0.1:1883", "--cut-ms", "5-1")]
    [InlineData("--listen", "0", "--upstream", "127.0.0.1:1883", "--delay-ms", "-4")]
    public async Task Link_BadArguments_OneLineErrorExit2(params string[] args)
    {
        using var process = Start(args);
        process.StandardInput.Close();
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2, process.ExitCode);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("iotdsd link:", lines[0], StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^link \S+:(\d+) ->")]
    private static partial Regex PortPattern();
}

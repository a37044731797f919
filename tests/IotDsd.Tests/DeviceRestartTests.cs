using System.Diagnostics;
using System.Text.Json;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Resilience;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>A device process (<c>iotdsd edge --state-dir</c>) killed with SIGKILL mid-generation and started again.</summary>
public sealed class DeviceRestartTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("rsr", "0.8")]
    [InlineData("greedy", "0")]
    public async Task EdgeKilledMidRun_RestartResumesSavedSession_SameText(string mode, string temperature)
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        var log = new ErrorLog();
        using var verifier = await FaultRig.StartVerifierAsync(broker.Port, "rv", log);

        // A slow link keeps the generation running long enough to be killed in the middle.
        await using var link = new LinkEmulator(0, "127.0.0.1", broker.Port);
        var slow = new LinkProfile { Delay = TimeSpan.FromMilliseconds(10) };
        link.Configure(slow, slow);
        await link.StartAsync();
        var root = Directory.CreateTempSubdirectory("iotdsd-state-").FullName;
        try
        {
            string[] Args(string dir) =>
            [
                "edge", "--pair", "ngram", "--broker", $"127.0.0.1:{link.Port}", "--device-id", $"restart-{mode}", "--verifier", "rv",
                "--prompt", "Never", "--max-tokens", "600", "--mode", mode, "--temperature", temperature, "--seed", "5",
                "--json", "--state-dir", dir,
            ];

            string referenceText;
            await using (var reference = IotdsdProcess.Start(Args(Path.Combine(root, "ref"))))
            {
                await reference.WaitForExitAsync(TimeSpan.FromMinutes(3));
                Assert.True(reference.ExitCode == 0, reference.Stderr);
                referenceText = TextOf(reference.Stdout);
            }

            var dir = Path.Combine(root, "crash");
            int savedTokens;
            await using (var victim = IotdsdProcess.Start(Args(dir)))
            {
                savedTokens = await WaitForSavedTokensAsync(dir, 150, victim);
                await victim.KillAsync();
            }

            Assert.True(Directory.GetFiles(dir, "*" + SessionStore.JournalSuffix).Length == 1, "no saved session survived the kill");
            await using var resumed = IotdsdProcess.Start(Args(dir));
            await resumed.WaitForExitAsync(TimeSpan.FromMinutes(3));
            Assert.True(resumed.ExitCode == 0, resumed.Stderr);
            using var json = JsonDocument.Parse(resumed.Stdout.Trim());
            Assert.Equal(referenceText, json.RootElement.GetProperty("text").GetString());
            var resumedTokens = json.RootElement.GetProperty("resumed_tokens").GetInt32();
            Assert.True(resumedTokens >= 150, $"resumed {resumedTokens} tokens");
            Assert.Empty(Directory.GetFiles(dir, "*" + SessionStore.JournalSuffix)); // a finished session is forgotten
            output.WriteLine($"{mode}: killed with {savedTokens} tokens saved; restart resumed {resumedTokens} and finished with the same {json.RootElement.GetProperty("tokens").GetInt32()} tokens");
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
            Directory.Delete(root, recursive: true);
        }
    }

    private static string TextOf(string stdout)
    {
        using var json = JsonDocument.Parse(stdout.Trim());
        return json.RootElement.GetProperty("text").GetString()!;
    }

    private static async Task<int> WaitForSavedTokensAsync(string dir, int atLeast, IotdsdProcess process)
    {
        var deadline = Stopwatch.GetTimestamp() + (120 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            Assert.False(process.HasExited, $"the device finished before it could be killed: {process.Stderr}");
            if (SavedSessions.CommittedTokens(dir) is { } committed && committed >= atLeast)
            {
                return committed;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException("no saved progress within 120 s");
    }
}

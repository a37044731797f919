using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Broker;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using IotDsd.Verifier.Limits;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// The verifier's per-device memory account charges each cached token what the loaded target's KV cache takes
/// (a built tiny transformer: 4 layers × 2 × 4 heads × 32 dims × 4 B = 4 KiB), and says so in its status.
/// </summary>
public sealed class ModelMemoryTests(TinyTransformerPair pair, ITestOutputHelper output) : IClassFixture<TinyTransformerPair>
{
    private const long TinyBytesPerToken = 4 * 2 * 4 * 32 * 4;

    private async Task<(GenerationReport? Report, GenerationException? Refused, long MostAccounted, VerifierService Verifier)> GenerateAsync(
        EmbeddedBroker broker, VerifierLimits limits, string id, int tokens)
    {
        var log = new ErrorLog();
        var address = new BrokerAddress("127.0.0.1", broker.Port);
        var verifier = new VerifierService(new VerifierOptions { Broker = address, VerifierId = id, Limits = limits }, pair.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        await using var worker = new DraftWorker(new EdgeOptions { Broker = address, DeviceId = id + "-device", VerifierId = id }, pair.Draft, log.CreateLogger<DraftWorker>());
        await worker.StartAsync(CancellationToken.None);
        long most = 0;
        var settings = new SessionSettings { SessionId = id, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, Seed = 1, MaxTokens = tokens, Gamma = 4 };
        try
        {
            var report = await worker.GenerateAsync(pair.Tokenizer.Encode("Once upon a time"), settings, _ => most = Math.Max(most, verifier.Limits.AccountedBytes), CancellationToken.None);
            return (report, null, most, verifier);
        }
        catch (GenerationException ex)
        {
            return (null, ex, most, verifier);
        }
    }

    [Fact]
    public async Task Verifier_TransformerTarget_ChargesItsKvShapeAndShowsItInStatusAndMetrics()
    {
        Assert.Equal(TinyBytesPerToken, pair.Target.CacheBytesPerToken);
        await using var broker = await EmbeddedBroker.StartAsync();
        var (report, refused, most, verifier) = await GenerateAsync(broker, new VerifierLimits(), "kv-shape", 300);
        try
        {
            Assert.Null(refused);
            Assert.Equal(300, report!.Tokens.Count);
            Assert.Equal(TinyBytesPerToken, verifier.Limits.BytesPerCachedToken);
            Assert.Equal(TinyBytesPerToken, verifier.Load.CacheBytesPerToken); // the retained status carries it
            Assert.NotNull(verifier.Load.MemoryBytes);
            // Half way through, the session holds at least 150 tokens of 4 KiB each.
            Assert.True(most >= 150 * TinyBytesPerToken, $"at most {most} bytes accounted");

            var metrics = new VerifierDiagnostics(verifier, pair.Target.Name, [], TimeProvider.System).Snapshot();
            Assert.Equal(TinyBytesPerToken, metrics.Extra["cache_bytes_per_token"]);
            Assert.True(metrics.Extra.ContainsKey("memory_bytes"));
            Assert.Matches(@"^\d+\.\dMiB@4KiB/tok$", FleetTable.Memory(metrics));
            output.WriteLine($"tiny transformer target: {verifier.Limits.BytesPerCachedToken} B/token; most accounted while generating {most} B; fleet table shows {FleetTable.Memory(metrics)}");
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
            verifier.Dispose();
        }
    }

    [Fact]
    public async Task Verifier_MemoryLimit_FollowsTheModelNotAFixedKilobyte()
    {
        // 1 MiB a device holds about 250 tokens of 4 KiB: a 400-token generation is refused where 1 KiB a token let it through.
        var tight = new VerifierLimits { MaxDeviceMemoryBytes = 1 << 20 };
        await using var broker = await EmbeddedBroker.StartAsync();
        var (report, refused, _, verifier) = await GenerateAsync(broker, tight, "kv-tight", 400);
        try
        {
            Assert.Null(report);
            Assert.Contains("KiB of verifier memory", refused!.Message, StringComparison.Ordinal);
            Assert.True(verifier.Limits.Counters[LimitKind.DeviceMemory] >= 1);
        }
        finally
        {
            await verifier.StopAsync(CancellationToken.None);
            verifier.Dispose();
        }

        var (allowed, notRefused, _, old) = await GenerateAsync(broker, tight with { BytesPerCachedToken = LimitGuard.FallbackBytesPerCachedToken }, "kv-fixed", 400);
        try
        {
            Assert.Null(notRefused);
            Assert.Equal(400, allowed!.Tokens.Count);
            Assert.Equal(1024, old.Limits.BytesPerCachedToken);
        }
        finally
        {
            await old.StopAsync(CancellationToken.None);
            old.Dispose();
        }
    }

    [Fact]
    public void Verifier_NgramTarget_ChargesItsTokenHistory()
    {
        using var verifier = new VerifierService(new VerifierOptions { Broker = new BrokerAddress("127.0.0.1", 1883), VerifierId = "ngram" }, TestEnvironment.Target, new ErrorLog().CreateLogger<VerifierService>());
        Assert.Equal(sizeof(int), TestEnvironment.Target.CacheBytesPerToken);
        Assert.Equal(sizeof(int), verifier.Limits.BytesPerCachedToken);
        Assert.Equal(sizeof(int), verifier.Load.CacheBytesPerToken);
    }

    [Fact]
    public void FleetTable_Memory_OnlyWhereTheMetricsCarryIt()
    {
        var verifier = new MetricsPayload { Role = "verifier", Id = "v", Extra = new Dictionary<string, double> { ["memory_bytes"] = 3.5 * (1 << 20), ["cache_bytes_per_token"] = 73_728 } };
        Assert.Equal("3.5MiB@72KiB/tok", FleetTable.Memory(verifier));
        Assert.Equal("-", FleetTable.Memory(new MetricsPayload { Role = "device", Id = "d" }));
        Assert.Equal("-", FleetTable.Memory(null));
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;

namespace IotDsd.Tests.Security;

/// <summary>
/// Verifier <c>verifier-1</c> on the certificate listener, and draft workers that connect as they are asked:
/// with a client certificate, or with a password over server-authenticated TLS.
/// </summary>
public sealed class SecurePipeline : IAsyncDisposable
{
    private readonly SecureBroker _broker;
    private readonly Dictionary<string, DraftWorker> _workers = [];
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromMinutes(3));

    private SecurePipeline(SecureBroker broker, VerifierService verifier, ErrorLog log)
    {
        _broker = broker;
        Verifier = verifier;
        Log = log;
    }

    public VerifierService Verifier { get; }

    public ErrorLog Log { get; }

    public static async Task<SecurePipeline> StartAsync(SecureBroker broker)
    {
        var log = new ErrorLog();
        var verifier = new VerifierService(
            new VerifierOptions { Broker = broker.Address(broker.CertPort), VerifierId = "verifier-1", Tls = broker.Tls("verifier-1") },
            TestEnvironment.Target,
            log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        return new SecurePipeline(broker, verifier, log);
    }

    /// <summary>Greedy generation from <paramref name="device"/>, connecting by certificate or, with <paramref name="password"/>, by password.</summary>
    public async Task<GenerationReport> GenerateAsync(string device, string prompt, int tokens, string session, bool password = false)
    {
        if (!_workers.TryGetValue(device, out var worker))
        {
            var options = password
                ? new EdgeOptions
                {
                    Broker = _broker.Address(_broker.PasswordPort), DeviceId = device, VerifierId = "verifier-1",
                    Username = device, Password = SecureBroker.Password(device), Tls = _broker.Tls(),
                }
                : new EdgeOptions { Broker = _broker.Address(_broker.CertPort), DeviceId = device, VerifierId = "verifier-1", Tls = _broker.Tls(device) };
            worker = new DraftWorker(options, TestEnvironment.Draft, Log.CreateLogger<DraftWorker>());
            await worker.StartAsync(_cts.Token);
            _workers[device] = worker;
        }

        var settings = new SessionSettings { SessionId = session, Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = tokens, Gamma = 4 };
        return await worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), settings, null, _cts.Token);
    }

    public int[] Reference(string prompt, int tokens) =>
        Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(prompt), SamplingParams.Greedy, 0, "ref", tokens);

    public async ValueTask DisposeAsync()
    {
        foreach (var w in _workers.Values)
        {
            await w.DisposeAsync();
        }

        await Verifier.StopAsync(CancellationToken.None);
        Verifier.Dispose();
        _cts.Dispose();
    }
}

using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Messaging.Connections;
using IotDsd.Verifier.Hosting;
using Microsoft.Extensions.Logging;

namespace IotDsd.Tests.Infrastructure;

/// <summary>A verifier and a draft worker on a real broker, each with its own MQTT connection.</summary>
public sealed class Pipeline : IAsyncDisposable
{
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromMinutes(5));

    private Pipeline(VerifierService verifier, DraftWorker worker, ErrorLog log)
    {
        Verifier = verifier;
        Worker = worker;
        Log = log;
    }

    public VerifierService Verifier { get; }
    public DraftWorker Worker { get; }

    /// <summary>Everything logged at warning or above.</summary>
    public ErrorLog Log { get; }

    public static async Task<Pipeline> StartAsync(
        int port, string deviceId = "test-device", string verifierId = "test-verifier", bool pinVerifier = false, IotDsd.Edge.Hosting.EdgeMetrics? metrics = null,
        Func<EdgeOptions, EdgeOptions>? device = null, IotDsd.Core.Models.ILanguageModel? target = null)
    {
        var log = new ErrorLog();
        var broker = new BrokerAddress("127.0.0.1", port);
        var verifier = new VerifierService(new VerifierOptions { Broker = broker, VerifierId = verifierId }, target ?? TestEnvironment.Target, log.CreateLogger<VerifierService>());
        await verifier.StartAsync(CancellationToken.None);
        await verifier.Ready.WaitAsync(TimeSpan.FromSeconds(20));
        var options = new EdgeOptions { Broker = broker, DeviceId = deviceId, VerifierId = pinVerifier ? verifierId : null };
        var worker = new DraftWorker(
            device?.Invoke(options) ?? options,
            TestEnvironment.Draft,
            log.CreateLogger<DraftWorker>(),
            metrics: metrics);
        await worker.StartAsync(CancellationToken.None);
        return new Pipeline(verifier, worker, log);
    }

    public Task<GenerationReport> GenerateAsync(string prompt, DecodingMode mode, float temperature, int maxTokens, ulong seed = 7, int gamma = 4, string session = "s1") =>
        Worker.GenerateAsync(TestEnvironment.Tokenizer.Encode(prompt), Settings(session, mode, temperature, maxTokens, seed, gamma), null, _cts.Token);

    /// <summary>The settings tests use: no top-k or top-p.</summary>
    public static SessionSettings Settings(string session, DecodingMode mode, float temperature, int maxTokens, ulong seed, int gamma = 4) => new()
    {
        SessionId = session,
        Mode = mode,
        Sampling = new SamplingParams(temperature, 0, 1f),
        Seed = seed,
        MaxTokens = maxTokens,
        Gamma = gamma,
    };

    public async ValueTask DisposeAsync()
    {
        await Worker.DisposeAsync();
        await Verifier.StopAsync(CancellationToken.None);
        Verifier.Dispose();
        _cts.Dispose();
    }
}

/// <summary>A logger provider that keeps warnings and errors, so tests can assert nothing went wrong.</summary>
public sealed class ErrorLog : ILoggerProvider, ILoggerFactory
{
    private readonly List<string> _entries = [];

    public IReadOnlyList<string> Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    public IReadOnlyList<string> Errors => Entries.Where(e => e.StartsWith("Error", StringComparison.Ordinal) || e.StartsWith("Critical", StringComparison.Ordinal)).ToList();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public ILogger<T> CreateLogger<T>() => new Logger<T>(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(ErrorLog owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            lock (owner._entries)
            {
                owner._entries.Add($"{logLevel} {category}: {formatter(state, exception)} {exception?.Message}");
            }
        }
    }
}

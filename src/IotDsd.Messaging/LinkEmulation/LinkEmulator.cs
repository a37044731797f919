using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Messaging.LinkEmulation;

/// <summary>Where an emulated link listens and what it forwards to.</summary>
public sealed record LinkEmulatorOptions
{
    /// <summary>Port to listen on; 0 picks a free one (read it from <see cref="LinkEmulator.Port"/>).</summary>
    public int ListenPort { get; init; }

    /// <summary>Address to listen on; loopback by default.</summary>
    public IPAddress Bind { get; init; } = IPAddress.Loopback;

    public required string UpstreamHost { get; init; }
    public required int UpstreamPort { get; init; }

    /// <summary>Client → upstream behaviour at start.</summary>
    public LinkProfile Up { get; init; } = LinkProfile.Perfect;

    /// <summary>Upstream → client behaviour at start.</summary>
    public LinkProfile Down { get; init; } = LinkProfile.Perfect;

    /// <summary>Seed of the jitter; a fixed seed gives the same jitter sequence for the same traffic.</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>
/// A user-space TCP link emulator: clients connect to <see cref="Port"/>, and each connection is forwarded to the
/// upstream host and port (typically an MQTT broker) through an emulated link.
/// <para>
/// Usage: <c>await using var link = new LinkEmulator(0, "127.0.0.1", brokerPort); await link.StartAsync();</c>, then
/// point the client at <c>127.0.0.1:{link.Port}</c>.
/// </para>
/// <list type="bullet">
/// <item><see cref="Configure"/> sets per-direction delay, jitter and bandwidth (<see cref="LinkProfile"/>) at any
/// time; the change applies to every byte read after it, on open connections too.</item>
/// <item><see cref="Cut"/> resets every connection (TCP RST both ways) and resets each new one as soon as it is
/// accepted, until <see cref="Restore"/>.</item>
/// <item><see cref="HalfOpen"/> keeps connections open and accepts new ones, but forwards nothing either way (a
/// silent partition: the peers only notice through their own timeouts). <see cref="Restore"/> resumes forwarding on
/// the same connections, with no byte lost, like a partition that heals before TCP gives up.</item>
/// </list>
/// Bytes are never reordered, duplicated or dropped while a connection lives. Delays run on the injected
/// <see cref="TimeProvider"/>. Thread-safe: every method may be called from any thread while traffic flows.
/// </summary>
public sealed partial class LinkEmulator : IAsyncDisposable
{
    private const int MaxChunk = 16 * 1024;
    private readonly LinkEmulatorOptions _options;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly Lock _lock = new();
    private readonly ConcurrentDictionary<long, LinkConnection> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private TaskCompletionSource _open = NewOpenGate();
    private Socket? _listener;
    private Task? _acceptLoop;
    private LinkProfile _up;
    private LinkProfile _down;
    private LinkState _state = LinkState.Up;
    private long _upFreeAt;
    private long _downFreeAt;
    private long _nextId;
    private long _accepted;
    private long _refused;
    private long _cuts;
    private long _bytesUp;
    private long _bytesDown;
    private long _lateTicksUp;
    private long _lateTicksDown;
    private long _lateChunksUp;
    private long _lateChunksDown;

    /// <summary>Forwards <paramref name="listenPort"/> (0: a free one) on loopback to <paramref name="upstreamHost"/>:<paramref name="upstreamPort"/>.</summary>
    public LinkEmulator(int listenPort, string upstreamHost, int upstreamPort, ILogger? logger = null, TimeProvider? time = null)
        : this(new LinkEmulatorOptions { ListenPort = listenPort, UpstreamHost = upstreamHost, UpstreamPort = upstreamPort }, logger, time)
    {
    }

    public LinkEmulator(LinkEmulatorOptions options, ILogger? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ListenPort is < 0 or > 65535 || options.UpstreamPort is < 1 or > 65535)
        {
            throw new ArgumentException("listen port must be 0-65535 and upstream port 1-65535", nameof(options));
        }

        if (string.IsNullOrWhiteSpace(options.UpstreamHost))
        {
            throw new ArgumentException("upstream host is empty", nameof(options));
        }

        _options = options;
        _logger = logger ?? NullLogger.Instance;
        Time = time ?? TimeProvider.System;
        _random = new Random(options.Seed);
        Configure(options.Up, options.Down);
        (_up, _down) = (options.Up, options.Down);
        _open.TrySetResult();
    }

    internal TimeProvider Time { get; }

    /// <summary>The port clients connect to (valid after <see cref="StartAsync"/>).</summary>
    public int Port { get; private set; }

    /// <summary>Where connections are forwarded.</summary>
    public string Upstream => $"{_options.UpstreamHost}:{_options.UpstreamPort}";

    public LinkState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>Current client → upstream profile.</summary>
    public LinkProfile Up => Volatile.Read(ref _up);

    /// <summary>Current upstream → client profile.</summary>
    public LinkProfile Down => Volatile.Read(ref _down);

    /// <summary>Connections accepted and forwarded (or held, while half-open).</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Connections reset at accept because the link was cut.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Times <see cref="Cut"/> was called.</summary>
    public long Cuts => Interlocked.Read(ref _cuts);

    /// <summary>Connections alive now.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>Bytes delivered to the upstream and to clients.</summary>
    public long BytesUp => Interlocked.Read(ref _bytesUp);

    public long BytesDown => Interlocked.Read(ref _bytesDown);

    /// <summary>Binds the listener and starts accepting.</summary>
    public Task StartAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (_listener is not null)
        {
            throw new InvalidOperationException("the link emulator is already started");
        }

        var listener = new Socket(_options.Bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(new IPEndPoint(_options.Bind, _options.ListenPort));
            listener.Listen(128);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new InvalidOperationException($"link emulator cannot listen on {_options.Bind}:{_options.ListenPort}: {ex.Message}", ex);
        }

        _listener = listener;
        Port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        _acceptLoop = Task.Run(() => AcceptLoopAsync(listener, _stopping.Token), CancellationToken.None);
        Log.Listening(_logger, _options.Bind.ToString(), Port, Upstream);
        return Task.CompletedTask;
    }

    /// <summary>Sets both directions' behaviour; applies to every byte read from now on.</summary>
    public void Configure(LinkProfile up, LinkProfile down)
    {
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(down);
        if ((up.Validate() ?? down.Validate()) is { } bad)
        {
            throw new ArgumentException(bad);
        }

        Volatile.Write(ref _up, up);
        Volatile.Write(ref _down, down);
    }

    /// <summary>Resets every connection and refuses (accepts and resets) new ones until <see cref="Restore"/>.</summary>
    public void Cut()
    {
        lock (_lock)
        {
            _state = LinkState.Cut;
            if (_open.Task.IsCompleted)
            {
                _open = NewOpenGate();
            }
        }

        Interlocked.Increment(ref _cuts);
        var n = 0;
        foreach (var connection in _connections.Values)
        {
            connection.Abort();
            n++;
        }

        Log.StateChanged(_logger, Port, "cut", n);
    }

    /// <summary>Keeps connections open but forwards nothing either way until <see cref="Restore"/> or <see cref="Cut"/>.</summary>
    public void HalfOpen()
    {
        lock (_lock)
        {
            if (_state == LinkState.Cut)
            {
                _state = LinkState.HalfOpen;
                return;
            }

            _state = LinkState.HalfOpen;
            if (_open.Task.IsCompleted)
            {
                _open = NewOpenGate();
            }
        }

        Log.StateChanged(_logger, Port, "half-open", _connections.Count);
    }

    /// <summary>Forwards again: new connections go through, and half-open ones resume where they stopped.</summary>
    public void Restore()
    {
        TaskCompletionSource gate;
        lock (_lock)
        {
            _state = LinkState.Up;
            gate = _open;
        }

        gate.TrySetResult();
        Log.StateChanged(_logger, Port, "up", _connections.Count);
    }

    /// <summary>Completes when the link forwards (at once while it is up).</summary>
    internal Task WhenOpenAsync(CancellationToken ct)
    {
        Task gate;
        lock (_lock)
        {
            gate = _open.Task;
        }

        return gate.IsCompleted ? Task.CompletedTask : gate.WaitAsync(ct);
    }

    /// <summary>When a chunk of <paramref name="bytes"/> read now leaves the link: after the ones queued before it
    /// (bandwidth), plus the delay and a jitter draw.</summary>
    internal long ScheduleDelivery(bool up, int bytes)
    {
        var profile = up ? Up : Down;
        var now = Time.GetTimestamp();
        var frequency = Time.TimestampFrequency;
        lock (_lock)
        {
            ref var freeAt = ref up ? ref _upFreeAt : ref _downFreeAt;
            var start = Math.Max(now, freeAt);
            var sent = profile.BytesPerSecond > 0 ? start + (long)((double)bytes * frequency / profile.BytesPerSecond) : start;
            freeAt = sent;
            var jitter = profile.Jitter > TimeSpan.Zero ? _random.NextDouble() * profile.Jitter.TotalSeconds : 0;
            return sent + (long)((profile.Delay.TotalSeconds + jitter) * frequency);
        }
    }

    /// <summary>Largest read per chunk: at most 20 ms of the direction's bandwidth, so pacing stays smooth.</summary>
    internal int ChunkSize(bool up)
    {
        var bps = (up ? Up : Down).BytesPerSecond;
        return bps > 0 ? (int)Math.Clamp(bps / 50, 512, MaxChunk) : MaxChunk;
    }

    internal void Delivered(bool up, int bytes) => Interlocked.Add(ref up ? ref _bytesUp : ref _bytesDown, bytes);

    /// <summary>Mean lateness of deliveries beyond their due time, milliseconds, up and down: the timer wake-ups of
    /// a busy machine, which a model of the link (the simulator's) adds to the configured delay.</summary>
    public (double Up, double Down) MeanLateMs => (
        MeanMs(Interlocked.Read(ref _lateTicksUp), Interlocked.Read(ref _lateChunksUp)),
        MeanMs(Interlocked.Read(ref _lateTicksDown), Interlocked.Read(ref _lateChunksDown)));

    internal void Late(bool up, long ticks)
    {
        Interlocked.Add(ref up ? ref _lateTicksUp : ref _lateTicksDown, Math.Max(0, ticks));
        Interlocked.Increment(ref up ? ref _lateChunksUp : ref _lateChunksDown);
    }

    private double MeanMs(long ticks, long chunks) => chunks == 0 ? 0 : ticks * 1000.0 / Time.TimestampFrequency / chunks;

    private async Task AcceptLoopAsync(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (ct.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            if (State == LinkState.Cut)
            {
                Interlocked.Increment(ref _refused);
                LinkConnection.Reset(client);
                continue;
            }

            Interlocked.Increment(ref _accepted);
            client.NoDelay = true;
            var id = Interlocked.Increment(ref _nextId);
            var connection = new LinkConnection(this, client, _options.UpstreamHost, _options.UpstreamPort, ct);
            _connections[id] = connection;
            _ = RunConnectionAsync(id, connection);
        }
    }

    private async Task RunConnectionAsync(long id, LinkConnection connection)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            Log.ConnectionEnded(_logger, Port, ex.Message);
        }
        finally
        {
            _connections.TryRemove(id, out _);
            connection.Dispose();
        }
    }

    internal void UpstreamFailed(string reason) => Log.UpstreamFailed(_logger, Upstream, reason);

    private static TaskCompletionSource NewOpenGate() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        foreach (var connection in _connections.Values)
        {
            connection.Abort();
        }

        lock (_lock)
        {
            _open.TrySetCanceled();
        }

        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 150, Level = LogLevel.Information, Message = "Link emulator listening on {Bind}:{Port}, forwarding to {Upstream}")]
        public static partial void Listening(ILogger logger, string bind, int port, string upstream);

        [LoggerMessage(EventId = 151, Level = LogLevel.Information, Message = "Link on port {Port} is now {State} ({Connections} connections)")]
        public static partial void StateChanged(ILogger logger, int port, string state, int connections);

        [LoggerMessage(EventId = 152, Level = LogLevel.Debug, Message = "Link connection on port {Port} ended: {Reason}")]
        public static partial void ConnectionEnded(ILogger logger, int port, string reason);

        [LoggerMessage(EventId = 153, Level = LogLevel.Warning, Message = "Link emulator could not reach upstream {Upstream}: {Reason}")]
        public static partial void UpstreamFailed(ILogger logger, string upstream, string reason);
    }
}

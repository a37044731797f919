using System.Diagnostics;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace IotDsd.Messaging.LinkEmulation;

/// <summary>Why a network-namespace link cannot be made here (not root, no iproute2, no namespaces in this kernel or container).</summary>
public sealed class NetnsUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A real link for tests and users who run as root: a fresh network namespace joined to this host by a veth pair with
/// private addresses (<c>10.213.0.0/16</c>, one <c>/30</c> per link). A process started with <see cref="Exec"/> lives
/// in the namespace and reaches the host only through the veth; <see cref="CutAsync"/> sets the host end down (the
/// device sees its carrier go, the kernel drops every packet) and <see cref="RestoreAsync"/> sets it up again, so TCP
/// sees what it sees on a real radio or cable outage, unlike the user-space <see cref="LinkEmulator"/>.
/// <see cref="SetRateAsync"/> adds real bandwidth limits (the <c>tbf</c> qdisc on each end). This kernel has no
/// <c>netem</c>: delay and jitter remain the user-space emulator's job.
/// <para>
/// Disposal deletes the veth pair and the namespace, after failures too; a namespace left behind by a killed process
/// (named <c>iotdsd-PID-N</c>) is removed by the next <see cref="CreateAsync"/> once that PID is gone.
/// </para>
/// </summary>
public sealed partial class NetnsLink : IAsyncDisposable
{
    private const string Prefix = "iotdsd-";
    private const int Subnets = 16_384; // /30s in 10.213.0.0/16
    private static int s_sequence;
    private readonly string _ip;
    private readonly ILogger _logger;
    private int _disposed;

    private NetnsLink(string ip, string name, int subnet, ILogger logger)
    {
        _ip = ip;
        _logger = logger;
        Namespace = name;
        HostDevice = $"{Prefix}h{subnet}";
        DeviceSideDevice = $"{Prefix}d{subnet}";
        HostAddress = Address(subnet, 1);
        DeviceAddress = Address(subnet, 2);
    }

    /// <summary>The namespace's name (<c>ip netns list</c>).</summary>
    public string Namespace { get; }

    /// <summary>The veth end on the host: the one <see cref="CutAsync"/> sets down.</summary>
    public string HostDevice { get; }

    /// <summary>The veth end inside the namespace.</summary>
    public string DeviceSideDevice { get; }

    /// <summary>The host's address on the link: servers the namespace must reach listen here.</summary>
    public IPAddress HostAddress { get; }

    /// <summary>The namespace's address on the link.</summary>
    public IPAddress DeviceAddress { get; }

    /// <summary>True between <see cref="CutAsync"/> and <see cref="RestoreAsync"/>.</summary>
    public bool IsCut { get; private set; }

    /// <summary>Cuts so far.</summary>
    public int Cuts { get; private set; }

    /// <summary>The command prefix that runs a program inside the namespace: <c>ip netns exec NAME</c>.</summary>
    public IReadOnlyList<string> ExecPrefix => [_ip, "netns", "exec", Namespace];

    /// <summary>
    /// Creates the namespace and veth pair and brings both ends up.
    /// </summary>
    /// <param name="logger">Where setup, cuts and clean-up problems are reported.</param>
    /// <param name="ipPath">iproute2's <c>ip</c>; null looks in the usual places and on PATH.</param>
    /// <param name="ct">Cancels the setup (what was made is removed).</param>
    /// <exception cref="NetnsUnavailableException">Not Linux, not root, no <c>ip</c>, or the kernel refused a namespace or veth.</exception>
    public static async Task<NetnsLink> CreateAsync(ILogger? logger = null, string? ipPath = null, CancellationToken ct = default)
    {
        logger ??= NullLogger.Instance;
        if (!OperatingSystem.IsLinux())
        {
            throw new NetnsUnavailableException("network-namespace links need Linux");
        }

        if (!Environment.IsPrivilegedProcess)
        {
            throw new NetnsUnavailableException("network-namespace links need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or use the user-space link emulator (iotdsd link)");
        }

        var ip = ipPath ?? FindIp();
        if (ip is null || !File.Exists(ip))
        {
            throw new NetnsUnavailableException($"iproute2's 'ip' was not found{(ip is null ? "" : $" at {ip}")}: install iproute2 (apt-get install iproute2)");
        }

        await PruneStaleAsync(ip, logger, ct).ConfigureAwait(false);
        var used = await UsedSubnetsAsync(ip, ct).ConfigureAwait(false);
        var name = string.Create(CultureInfo.InvariantCulture, $"{Prefix}{Environment.ProcessId}-{Interlocked.Increment(ref s_sequence)}");
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var subnet = Random.Shared.Next(Subnets);
            if (used.Contains(subnet))
            {
                continue;
            }

            var link = new NetnsLink(ip, name, subnet, logger);
            try
            {
                await link.SetUpAsync(ct).ConfigureAwait(false);
                Log.Created(logger, link.Namespace, link.HostDevice, link.HostAddress.ToString(), link.DeviceAddress.ToString());
                return link;
            }
            catch (NetnsUnavailableException ex) when (ex.Message.Contains("File exists", StringComparison.Ordinal) && attempt < 7)
            {
                // Another process took the same subnet between our look and our add: clean up and draw again.
                await link.DisposeAsync().ConfigureAwait(false);
                used.Add(subnet);
            }
            catch
            {
                await link.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        throw new NetnsUnavailableException("no free /30 in 10.213.0.0/16 after 8 draws");
    }

    private async Task SetUpAsync(CancellationToken ct)
    {
        await IpAsync(ct, "netns", "add", Namespace).ConfigureAwait(false);
        await IpAsync(ct, "link", "add", HostDevice, "type", "veth", "peer", "name", DeviceSideDevice, "netns", Namespace).ConfigureAwait(false);
        await IpAsync(ct, "addr", "add", $"{HostAddress}/30", "dev", HostDevice).ConfigureAwait(false);
        await IpAsync(ct, "link", "set", HostDevice, "up").ConfigureAwait(false);
        await IpAsync(ct, "-n", Namespace, "addr", "add", $"{DeviceAddress}/30", "dev", DeviceSideDevice).ConfigureAwait(false);
        await IpAsync(ct, "-n", Namespace, "link", "set", DeviceSideDevice, "up").ConfigureAwait(false);
        await IpAsync(ct, "-n", Namespace, "link", "set", "lo", "up").ConfigureAwait(false);
    }

    /// <summary>A process start for <paramref name="file"/> with <paramref name="arguments"/> inside the namespace (stdio not redirected).</summary>
    public ProcessStartInfo Exec(string file, params IEnumerable<string> arguments)
    {
        var psi = new ProcessStartInfo(_ip) { UseShellExecute = false };
        foreach (var a in ExecPrefix.Skip(1).Append(file).Concat(arguments))
        {
            psi.ArgumentList.Add(a);
        }

        return psi;
    }

    /// <summary>Cuts the link: the host end goes down and every packet either way is dropped until <see cref="RestoreAsync"/>.</summary>
    public async Task CutAsync(CancellationToken ct = default)
    {
        await IpAsync(ct, "link", "set", HostDevice, "down").ConfigureAwait(false);
        IsCut = true;
        Cuts++;
        Log.Cut(_logger, Namespace, HostDevice);
    }

    /// <summary>Brings the host end up again (the namespace's address and routes were never touched).</summary>
    public async Task RestoreAsync(CancellationToken ct = default)
    {
        await IpAsync(ct, "link", "set", HostDevice, "up").ConfigureAwait(false);
        IsCut = false;
        Log.Restored(_logger, Namespace, HostDevice);
    }

    /// <summary>
    /// Real bandwidth limits with the <c>tbf</c> qdisc: <paramref name="upBytesPerSecond"/> on the namespace's end
    /// (device → host), <paramref name="downBytesPerSecond"/> on the host's end; 0 removes the limit of that direction.
    /// </summary>
    public async Task SetRateAsync(long upBytesPerSecond, long downBytesPerSecond, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(upBytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfNegative(downBytesPerSecond);
        var tc = Path.Combine(Path.GetDirectoryName(_ip)!, "tc");
        if (!File.Exists(tc))
        {
            throw new NetnsUnavailableException($"'tc' was not found next to {_ip}: install iproute2");
        }

        await RateAsync(tc, ["-n", Namespace], DeviceSideDevice, upBytesPerSecond, ct).ConfigureAwait(false);
        await RateAsync(tc, [], HostDevice, downBytesPerSecond, ct).ConfigureAwait(false);
    }

    private async Task RateAsync(string tc, string[] scope, string device, long bytesPerSecond, CancellationToken ct)
    {
        if (bytesPerSecond == 0)
        {
            // No qdisc to delete is fine: the direction was unlimited already.
            await RunAsync(tc, [.. scope, "qdisc", "del", "dev", device, "root"], check: false, ct).ConfigureAwait(false);
            return;
        }

        // The bucket holds a tenth of a second of traffic (at least a few full frames), the queue at most half a second.
        var burst = Math.Max(16 * 1024, bytesPerSecond / 10);
        var limit = Math.Max(burst + 3028, bytesPerSecond / 2);
        await RunAsync(
            tc,
            [.. scope, "qdisc", "replace", "dev", device, "root", "tbf", "rate", Invariant($"{bytesPerSecond}bps"), "burst", Invariant($"{burst}"), "limit", Invariant($"{limit}")],
            check: true,
            ct).ConfigureAwait(false);
        Log.Rate(_logger, Namespace, device, bytesPerSecond);
    }

    /// <summary>Deletes the veth pair (both ends go with either) and the namespace. Never throws; problems are logged.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // The host end first: a namespace that still holds processes outlives 'ip netns del', its veth must not.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var link = await RunAsync(_ip, ["link", "del", HostDevice], check: false, cts.Token).ConfigureAwait(false);
        var ns = await RunAsync(_ip, ["netns", "del", Namespace], check: false, cts.Token).ConfigureAwait(false);
        if (ns.Exit != 0 && !ns.Error.Contains("No such file", StringComparison.Ordinal))
        {
            Log.CleanupFailed(_logger, Namespace, ns.Error.Trim());
        }
        else if (link.Exit != 0 && !link.Error.Contains("Cannot find device", StringComparison.Ordinal))
        {
            Log.CleanupFailed(_logger, HostDevice, link.Error.Trim());
        }
    }

    /// <summary>True when <see cref="Namespace"/> still exists (for checks after disposal).</summary>
    public async Task<bool> ExistsAsync(CancellationToken ct = default) =>
        (await NamespacesAsync(_ip, ct).ConfigureAwait(false)).Contains(Namespace);

    private Task IpAsync(CancellationToken ct, params string[] args) => RunAsync(_ip, args, check: true, ct);

    private static async Task<(int Exit, string Output, string Error)> RunAsync(string file, IReadOnlyList<string> args, bool check, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi) ?? throw new NetnsUnavailableException($"could not start {file}");
        var output = process.StandardOutput.ReadToEndAsync(ct);
        var error = process.StandardError.ReadToEndAsync(ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(15));
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw;
        }

        var result = (process.ExitCode, await output.ConfigureAwait(false), await error.ConfigureAwait(false));
        if (check && result.ExitCode != 0)
        {
            throw new NetnsUnavailableException($"'{Path.GetFileName(file)} {string.Join(' ', args)}' failed (exit {result.ExitCode}): {result.Item3.Trim()}");
        }

        return result;
    }

    private static async Task<List<string>> NamespacesAsync(string ip, CancellationToken ct)
    {
        var (_, output, _) = await RunAsync(ip, ["netns", "list"], check: false, ct).ConfigureAwait(false);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => l.Split(' ')[0])];
    }

    /// <summary>Removes namespaces this class made in processes that no longer run.</summary>
    private static async Task PruneStaleAsync(string ip, ILogger logger, CancellationToken ct)
    {
        foreach (var name in await NamespacesAsync(ip, ct).ConfigureAwait(false))
        {
            var parts = name.Split('-');
            if (parts is [_, var pidText, _] && name.StartsWith(Prefix, StringComparison.Ordinal)
                && int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && !Directory.Exists($"/proc/{pid}"))
            {
                await RunAsync(ip, ["netns", "del", name], check: false, ct).ConfigureAwait(false);
                Log.Pruned(logger, name);
            }
        }
    }

    /// <summary>The /30s of 10.213.0.0/16 that already have an address on this host.</summary>
    private static async Task<HashSet<int>> UsedSubnetsAsync(string ip, CancellationToken ct)
    {
        var (_, output, _) = await RunAsync(ip, ["-4", "-o", "addr", "show"], check: false, ct).ConfigureAwait(false);
        var used = new HashSet<int>();
        foreach (var word in output.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (word.StartsWith("10.213.", StringComparison.Ordinal) && IPAddress.TryParse(word.Split('/')[0], out var address))
            {
                var b = address.GetAddressBytes();
                used.Add(((b[2] << 8) | b[3]) >> 2);
            }
        }

        return used;
    }

    private static IPAddress Address(int subnet, int host) =>
        new([10, 213, (byte)((subnet * 4) >> 8), (byte)(((subnet * 4) & 0xFF) + host)]);

    private static string? FindIp() =>
        new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }
            .Concat((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, "ip")))
            .FirstOrDefault(File.Exists);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static partial class Log
    {
        [LoggerMessage(EventId = 420, Level = LogLevel.Information, Message = "Network namespace {Namespace} joined to the host by {HostDevice}: host {HostAddress}, namespace {DeviceAddress}")]
        public static partial void Created(ILogger logger, string @namespace, string hostDevice, string hostAddress, string deviceAddress);

        [LoggerMessage(EventId = 421, Level = LogLevel.Information, Message = "Link of {Namespace} cut ({HostDevice} down)")]
        public static partial void Cut(ILogger logger, string @namespace, string hostDevice);

        [LoggerMessage(EventId = 422, Level = LogLevel.Information, Message = "Link of {Namespace} restored ({HostDevice} up)")]
        public static partial void Restored(ILogger logger, string @namespace, string hostDevice);

        [LoggerMessage(EventId = 423, Level = LogLevel.Information, Message = "Link of {Namespace}: {Device} limited to {BytesPerSecond} bytes/s")]
        public static partial void Rate(ILogger logger, string @namespace, string device, long bytesPerSecond);

        [LoggerMessage(EventId = 424, Level = LogLevel.Warning, Message = "Could not remove {What}: {Reason}")]
        public static partial void CleanupFailed(ILogger logger, string what, string reason);

        [LoggerMessage(EventId = 425, Level = LogLevel.Information, Message = "Removed network namespace {Namespace} left behind by a process that no longer runs")]
        public static partial void Pruned(ILogger logger, string @namespace);
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using IotDsd.Testbed.Faults;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Messaging.LinkEmulation;
using IotDsd.Tests.Infrastructure;
using IotDsd.Verifier.Hosting;
using Xunit.Abstractions;

namespace IotDsd.Tests;

/// <summary>
/// Restarts of every part, at every phase of a generation, for <c>iotdsd edge</c> and for the <c>iotdsd device</c>
/// service, on Mosquitto with persistence (without it where the broker is to lose every session). Each case ends
/// with the text of the uninterrupted run, every token once (the count is the requested one and the text is equal).
/// <para>
/// Faults are timed by what the broker carries (<see cref="WireWatch"/>): the session's open, a round in flight, the
/// moment a verdict has left for the device, an rsr follow-up (<c>MoreProposals</c>), a streamed round at the
/// verifier-decoding rung (pinned with <c>--level verifier-decoding</c>). A 10 ms link each way between device and
/// broker (the link emulator) keeps each phase open long enough to land in. The time from the restart to the next
/// committed reply, and the part of it until the restarted part was online again, is written to the test output (and
/// appended to <c>$IOTDSD_RESTART_TABLE</c> when set); it is a figure to read, not asserted.
/// </para>
/// </summary>
public sealed class RestartMatrixTests(ITestOutputHelper output)
{
    public enum Fault
    {
        /// <summary>Three generations under one device id, each in a new process; nothing killed.</summary>
        Successive,

        /// <summary>Device SIGKILLed when its session's open is on the wire; restarted with its state.</summary>
        KillAtOpen,

        /// <summary>Device SIGKILLed with a round in flight; restarted with its state (resumes).</summary>
        KillRoundInFlight,

        /// <summary>Device SIGKILLed after a verdict reached it, before the next round was answered; restarted with its state.</summary>
        KillBetweenRounds,

        /// <summary>Device SIGKILLed while an rsr follow-up (more proposals) is in flight; restarted with its state.</summary>
        KillRsrFollowUp,

        /// <summary>Device SIGKILLed during a streamed round at the verifier-decoding rung; restarted with its state.</summary>
        KillStreamedRung,

        /// <summary>Device SIGKILLed with a round in flight; restarted without its state (starts over).</summary>
        KillWithoutState,

        /// <summary>The verifier process SIGKILLed mid-generation and started again under the same id.</summary>
        VerifierRestarted,

        /// <summary>The verifier process SIGKILLed mid-generation and replaced by one with a new id.</summary>
        VerifierReplaced,

        /// <summary>The broker restarted mid-generation with its persistent store (sessions survive).</summary>
        BrokerRestarted,

        /// <summary>The broker restarted mid-generation without persistence (every session and retained status lost).</summary>
        BrokerLost,
    }

    private const string Prompt = "The old lighthouse keeper";
    private const int Tokens = 100;
    private const ulong Seed = 5;
    private static readonly TimeSpan LinkDelay = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);
    private static readonly Lazy<string> GreedyReference = new(() =>
        Decode(Autoregressive.Generate(TestEnvironment.Target, TestEnvironment.Tokenizer.Encode(Prompt), SamplingParams.Greedy, 0, "ref", Tokens)));

    public static TheoryData<string, Fault> Cases()
    {
        var cases = new TheoryData<string, Fault>();
        foreach (var role in new[] { "edge", "device" })
        {
            foreach (var fault in Enum.GetValues<Fault>())
            {
                cases.Add(role, fault);
            }
        }

        return cases;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public async Task Restart_EndsWithTheUninterruptedText(string role, Fault fault)
    {
        await using var mosquitto = await MosquittoProcess.TryStart(persistence: fault != Fault.BrokerLost);
        Skip.If(mosquitto is null, "mosquitto is not installed");
        var rig = new Rig(role, fault, mosquitto, output);
        await using (rig)
        {
            await rig.StartAsync();
            var (outcome, restartToToken, restartToOnline) = await rig.RunAsync();
            static string Ms(double? ms) => ms is { } v ? v.ToString("0", CultureInfo.InvariantCulture) + " ms" : "-";
            var line = $"| {role} | {fault} | {outcome} | {Ms(restartToToken)} | {Ms(restartToOnline)} |";
            output.WriteLine(line);
            if (Environment.GetEnvironmentVariable("IOTDSD_RESTART_TABLE") is { Length: > 0 } table)
            {
                await File.AppendAllTextAsync(table, line + Environment.NewLine);
            }
        }
    }

    [SkippableFact]
    public async Task NewProcessUnderAKeptSession_SubscribesOnItsFirstConnect_GetsTheRetainedStatuses()
    {
        // A retained message is delivered in answer to a SUBSCRIBE; a connection that finds its session kept by the
        // broker (an earlier process under the same client id) must still subscribe once, or it never learns them.
        await using var mosquitto = await MosquittoProcess.TryStart(persistence: true);
        Skip.If(mosquitto is null, "mosquitto is not installed");
        var settings = new IotDsd.Messaging.Connections.MqttSettings
        {
            Broker = new IotDsd.Messaging.Connections.BrokerAddress("127.0.0.1", mosquitto.Port), ClientId = "kept-session", CleanStart = false, SessionExpirySeconds = 300,
        };
        string[] filters = [IotDsd.Contracts.Topics.TopicScheme.AllVerifierStatus];
        await using (var first = new IotDsd.Messaging.Connections.MqttConnection(settings, _ => false, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            await first.ConnectAsync(filters, CancellationToken.None);
        }

        await using (var publisher = await RawClient.ConnectAsync(mosquitto.Port, "kept-session-publisher"))
        {
            await publisher.PublishAsync("iotdsd/v1/verifiers/kept/status", new IotDsd.Messaging.Presence.PresencePayload { Role = "verifier", Id = "kept" }.ToJson(), retain: true);
        }

        // Let the retained status also reach the kept session's queue and drain that with a second process, so only a
        // new SUBSCRIBE can bring it to the third.
        await using (var second = new IotDsd.Messaging.Connections.MqttConnection(settings, _ => false, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            var present = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            second.Connected += kept => present.TrySetResult(kept);
            await second.ConnectAsync(filters, CancellationToken.None);
            Assert.True(await present.Task.WaitAsync(TimeSpan.FromSeconds(10)), "the broker did not keep the session");
            await ReadStatusAsync(second);
        }

        await using var third = new IotDsd.Messaging.Connections.MqttConnection(settings, _ => false, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        await third.ConnectAsync(filters, CancellationToken.None);
        await ReadStatusAsync(third);

        static async Task ReadStatusAsync(IotDsd.Messaging.Connections.MqttConnection connection)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (true)
            {
                var message = await connection.Inbound.ReadAsync(cts.Token);
                if (message.Topic == "iotdsd/v1/verifiers/kept/status")
                {
                    return;
                }
            }
        }
    }

    private static string Decode(IEnumerable<int> tokens)
    {
        var stream = TestEnvironment.Tokenizer.CreateStreamDecoder();
        var text = new StringBuilder();
        foreach (var t in tokens)
        {
            text.Append(stream.Append(t));
        }

        return text.Append(stream.Flush()).ToString();
    }

    /// <summary>One case: broker, link, verifier, watcher and the device processes, with what they need to be compared.</summary>
    private sealed class Rig(string role, Fault fault, MosquittoChild mosquitto, ITestOutputHelper output) : IAsyncDisposable
    {
        private readonly string _device = $"rm-{role}-{fault}".ToLowerInvariant();
        private readonly string _root = Directory.CreateTempSubdirectory("iotdsd-restart-").FullName;
        private readonly ErrorLog _log = new();
        private readonly List<IotdsdProcess> _processes = [];
        private LinkEmulator? _link;
        private WireWatch? _watch;
        private VerifierService? _verifier;
        private IotdsdProcess? _verifierProcess;

        private bool Rsr => fault == Fault.KillRsrFollowUp;

        private bool Streamed => fault == Fault.KillStreamedRung;

        private bool Edge => role == "edge";

        private WireWatch Watch => _watch!;

        private string DeviceStatus => $"iotdsd/v1/devices/{_device}/status";

        public async Task StartAsync()
        {
            _link = new LinkEmulator(0, "127.0.0.1", mosquitto.Port);
            var slow = new LinkProfile { Delay = LinkDelay };
            _link.Configure(slow, slow);
            await _link.StartAsync();
            _watch = await WireWatch.StartAsync(mosquitto.Port, _device);
            if (fault is Fault.VerifierRestarted or Fault.VerifierReplaced)
            {
                _verifierProcess = await StartVerifierProcessAsync("rm-verifier-a");
            }
            else
            {
                _verifier = await FaultRig.StartVerifierAsync(mosquitto.Port, "rm-verifier", _log);
            }
        }

        /// <summary>
        /// Runs the case; returns its outcome in words, the time from the restart to the next committed reply, and the
        /// part of it until the restarted part (the device, the verifier; the device again after a broker restart) was online.
        /// </summary>
        public async Task<(string Outcome, double? RestartToToken, double? RestartToOnline)> RunAsync()
        {
            var state = Path.Combine(_root, "state");
            switch (fault)
            {
                case Fault.Successive:
                {
                    (double?, double?) last = default;
                    for (var run = 1; run <= 3; run++)
                    {
                        // The reported case: the edge without a state directory (the default), the service with its own.
                        var started = Stopwatch.GetTimestamp();
                        var result = await FinishAsync(StartDevice(state, keepState: !Edge), state, run - 1);
                        await AssertUninterruptedAsync(result, $"run {run}");
                        last = (Watch.MillisToCommitAfter(started), Watch.MillisToOnlineAfter(started, DeviceStatus));
                    }

                    return ("3 runs, same text", last.Item1, last.Item2);
                }

                case Fault.VerifierRestarted or Fault.VerifierReplaced:
                {
                    var device = StartDevice(state, keepState: true);
                    await Watch.WaitForAsync(s => s.Message is DraftRound && s.RoundsBefore >= 3, Limit, "a round in flight");
                    await _verifierProcess!.KillAsync();
                    var next = fault == Fault.VerifierRestarted ? "rm-verifier-a" : "rm-verifier-b";
                    var restarted = Stopwatch.GetTimestamp();
                    _verifierProcess = await StartVerifierProcessAsync(next);
                    var result = await FinishAsync(device, state, 0);
                    await AssertUninterruptedAsync(result, "after the verifier restart");
                    Assert.True(
                        Watch.Seen.Any(s => s.At >= restarted && s.Topic == $"iotdsd/v1/verifiers/{next}/rounds/{_device}" && s.Message is DraftRound),
                        $"the new verifier process {next} never served a round");
                    return ($"completed on {next}", Watch.MillisToCommitAfter(restarted), Watch.MillisToOnlineAfter(restarted, $"iotdsd/v1/verifiers/{next}/status"));
                }

                case Fault.BrokerRestarted or Fault.BrokerLost:
                {
                    var device = StartDevice(state, keepState: true);
                    await Watch.WaitForAsync(s => s.Message is DraftRound && s.RoundsBefore >= 3, Limit, "a round in flight");
                    await mosquitto.StopAsync();
                    await mosquitto.StartAsync();
                    var restarted = Stopwatch.GetTimestamp();
                    await Watch.ReconnectAsync(mosquitto.Port);
                    var result = await FinishAsync(device, state, 0);
                    await AssertUninterruptedAsync(result, "after the broker restart");
                    return (fault == Fault.BrokerLost ? "completed, sessions lost" : "completed, session kept", Watch.MillisToCommitAfter(restarted), Watch.MillisToOnlineAfter(restarted, DeviceStatus));
                }

                default:
                {
                    var victim = StartDevice(state, keepState: true);
                    var (trigger, what) = fault switch
                    {
                        Fault.KillAtOpen => ((Func<WireSeen, bool>)(s => s.Message is OpenSession), "the session's open"),
                        Fault.KillBetweenRounds => (s => s.Message is Verdict { Kind: not VerdictKind.Proposals } && s.RoundsBefore >= 3, "a verdict"),
                        Fault.KillRsrFollowUp => (s => s.Message is MoreProposals && s.RoundsBefore >= 1, "an rsr follow-up"),
                        Fault.KillStreamedRung => (s => s.Message is DraftRound { Stream: > 0 } && s.RoundsBefore >= 2, "a streamed round"),
                        _ => (s => s.Message is DraftRound && s.RoundsBefore >= 3, "a round in flight"),
                    };
                    Task<WireSeen> seen = Watch.WaitForAsync(trigger, Limit, what);
                    await Task.WhenAny(seen, UntilExitAsync(victim));
                    Assert.True(seen.IsCompletedSuccessfully, $"the device ended before {what} was seen: {victim.Stderr}");
                    if (fault == Fault.KillBetweenRounds)
                    {
                        // The verdict was on its way to the device: once it has crossed the link, the device is between rounds.
                        await Task.Delay(LinkDelay + TimeSpan.FromMilliseconds(5));
                    }

                    await victim.KillAsync();
                    var keep = fault != Fault.KillWithoutState;
                    var restartState = keep ? state : Path.Combine(_root, "fresh");
                    var restarted = Stopwatch.GetTimestamp();
                    var result = await FinishAsync(StartDevice(restartState, keep), restartState, 0);
                    await AssertUninterruptedAsync(result, "after the restart");
                    if (!keep)
                    {
                        Assert.False(result.Resumed, "a device without its state resumed");
                    }
                    else if (fault != Fault.KillAtOpen)
                    {
                        Assert.True(result.Resumed, $"the restarted device did not resume its saved generation: {result.Log}");
                    }

                    // The presence counters live in the state directory too: a restart with it is the second boot.
                    var boot = Watch.Seen.LastOrDefault(s => s.At >= restarted && s.Message is IotDsd.Messaging.Presence.PresencePayload { Role: "device", State: "online" })?.Message as IotDsd.Messaging.Presence.PresencePayload;
                    Assert.True(boot is not null, "the restarted device published no online status");
                    Assert.Equal(keep ? 2L : Edge ? null : 1L, boot.Boot); // the edge keeps no counters without --state-dir
                    return (result.Resumed ? "resumed, same text" : "started over, same text", Watch.MillisToCommitAfter(restarted), Watch.MillisToOnlineAfter(restarted, DeviceStatus));
                }
            }
        }

        private sealed record Completion(string Text, int Tokens, string Session, bool Resumed, string Log);

        private IotdsdProcess StartDevice(string stateDir, bool keepState)
        {
            var broker = $"127.0.0.1:{_link!.Port}";
            List<string> args;
            if (Edge)
            {
                args = ["edge", "--broker", broker, "--device-id", _device, "--prompt", Prompt, "--json", "--verbose", "--request-timeout-ms", "1000", "--give-up-s", "90"];
                if (keepState)
                {
                    args.AddRange(["--state-dir", stateDir]);
                }
            }
            else
            {
                Directory.CreateDirectory(stateDir);
                var cursor = Path.Combine(stateDir, "service.json");
                if (Rsr && !File.Exists(cursor))
                {
                    // The service names its sessions after its run, which it starts from the clock; rsr draws depend on
                    // the session id, so the run is named here to make the follow-up land where it always does.
                    File.WriteAllText(cursor, """{ "run": "rm", "job": 0 }""");
                }

                var prompts = Path.Combine(_root, "prompts.txt");
                File.WriteAllText(prompts, Prompt + "\n");
                var config = Path.Combine(_root, "device.json");
                File.WriteAllText(config, """{ "Edge": { "MaxJobs": 1, "JobIntervalMs": 0 }, "Diagnostics": { "MetricsIntervalMs": 60000 } }""");
                args = ["device", "--config", config, "--broker", broker, "--device-id", _device, "--state-dir", stateDir, "--prompt-file", prompts, "--request-timeout-ms", "1000", "--log-level", "Information"];
            }

            // The verifier serves the test pair's target: the device drafts with the same pair's draft, not the shipped default.
            args.AddRange(["--draft", TestEnvironment.DraftDir]);
            args.AddRange(["--max-tokens", Tokens.ToString(CultureInfo.InvariantCulture), "--seed", Seed.ToString(CultureInfo.InvariantCulture)]);
            args.AddRange(Rsr ? ["--mode", "rsr", "--temperature", "0.8"] : ["--temperature", "0"]);
            if (Streamed)
            {
                args.AddRange(["--level", "verifier-decoding"]);
            }

            var process = IotdsdProcess.Start([.. args]);
            _processes.Add(process);
            return process;
        }

        /// <summary>Waits for the generation: the edge's exit and JSON line, or the service's completion line (then stops it).</summary>
        private async Task<Completion> FinishAsync(IotdsdProcess process, string stateDir, int completionsBefore)
        {
            if (Edge)
            {
                try
                {
                    await process.WaitForExitAsync(Limit);
                }
                catch (OperationCanceledException)
                {
                    Assert.Fail($"the edge did not finish within {Limit.TotalSeconds:0} s: {process.Stderr}");
                }

                Assert.True(process.ExitCode == 0, $"edge exited {process.ExitCode}: {process.Stderr}");
                using var json = JsonDocument.Parse(process.Stdout.Trim());
                var root = json.RootElement;
                return new Completion(
                    root.GetProperty("text").GetString()!, root.GetProperty("tokens").GetInt32(), $"{_device}-{Seed:x}-0",
                    root.TryGetProperty("resumed_tokens", out var resumed) && resumed.GetInt32() > 0, process.Stderr);
            }

            var file = Path.Combine(stateDir, "completions.jsonl");
            var deadline = Stopwatch.GetTimestamp() + (long)(Limit.TotalSeconds * Stopwatch.Frequency);
            string[] lines = [];
            while (Stopwatch.GetTimestamp() < deadline)
            {
                Assert.False(process.HasExited, $"device service exited {(process.HasExited ? process.ExitCode : 0)}: {process.Stderr}");
                lines = File.Exists(file) ? await File.ReadAllLinesAsync(file) : [];
                if (lines.Length > completionsBefore)
                {
                    break;
                }

                await Task.Delay(20);
            }

            Assert.True(lines.Length == completionsBefore + 1, $"the device service completed {lines.Length - completionsBefore} generations, expected 1: {process.Stderr}");
            await process.SignalAsync("TERM");
            await process.WaitForExitAsync(TimeSpan.FromSeconds(30));
            using var line = JsonDocument.Parse(lines[^1]);
            var r = line.RootElement;
            return new Completion(
                r.GetProperty("text").GetString()!, r.GetProperty("tokens").GetInt32(), r.GetProperty("session").GetString()!,
                process.Stderr.Contains("Resumed session", StringComparison.Ordinal), process.Stderr);
        }

        /// <summary>The text and count of the uninterrupted run: greedy against the target alone, rsr through an in-process pair under the same session id.</summary>
        private async Task AssertUninterruptedAsync(Completion result, string when)
        {
            string reference;
            if (Rsr)
            {
                var settings = new SessionSettings
                {
                    SessionId = result.Session, Mode = DecodingMode.Rsr, Sampling = new SamplingParams(0.8f, 0, 1f), Seed = Seed, MaxTokens = Tokens, Gamma = 4,
                };
                var soak = new FaultSoak(TestEnvironment.Draft, TestEnvironment.Target, TestEnvironment.TargetDir, _log);
                reference = Decode(await soak.ReferenceAsync(TestEnvironment.Tokenizer.Encode(Prompt), settings, CancellationToken.None));
            }
            else
            {
                reference = GreedyReference.Value;
            }

            Assert.Equal(Tokens, result.Tokens);
            if (reference != result.Text)
            {
                Assert.Fail($"{when}: the text differs from the uninterrupted run's\n--- expected\n{reference}\n--- got\n{result.Text}\n--- log\n{result.Log}");
            }
        }

        private async Task<IotdsdProcess> StartVerifierProcessAsync(string id)
        {
            var verifier = IotdsdProcess.Start("verifier", "--broker", $"127.0.0.1:{mosquitto.Port}", "--id", id, "--will-delay-s", "0", "--target", TestEnvironment.TargetDir);
            _processes.Add(verifier);
            var online = Watch.WaitForAsync(s => s.Topic == $"iotdsd/v1/verifiers/{id}/status" && s.Message is IotDsd.Messaging.Presence.PresencePayload { State: "online" }, Limit, $"verifier {id} online");
            await Task.WhenAny(online, UntilExitAsync(verifier));
            Assert.True(online.IsCompletedSuccessfully, $"verifier {id} did not come online: {verifier.Stderr}");
            return verifier;
        }

        private static async Task UntilExitAsync(IotdsdProcess process)
        {
            while (!process.HasExited)
            {
                await Task.Delay(50);
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var p in _processes)
            {
                await p.DisposeAsync();
            }

            if (_verifier is not null)
            {
                await _verifier.StopAsync(CancellationToken.None);
                _verifier.Dispose();
            }

            if (_watch is not null)
            {
                await _watch.DisposeAsync();
            }

            if (_link is not null)
            {
                await _link.DisposeAsync();
            }

            foreach (var e in _log.Errors)
            {
                output.WriteLine(e);
            }

            try
            {
                Directory.Delete(_root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

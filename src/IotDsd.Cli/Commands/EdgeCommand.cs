using System.CommandLine;
using IotDsd.Edge.Drafting;
using IotDsd.Edge.Hosting;
using IotDsd.Edge.Resilience;
using Microsoft.Extensions.Logging;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd edge</c>: the draft worker role against any MQTT 5 broker; generates and exits.</summary>
internal static class EdgeCommand
{
    public static Command Create(CommonOptions common)
    {
        var deviceId = new Option<string>("--device-id") { Description = "Device id (a topic level; must match the broker identity when ACLs confine devices).", DefaultValueFactory = _ => Environment.MachineName.ToLowerInvariant() };
        var verifier = new Option<string?>("--verifier") { Description = "Pin a verifier id (default: discover the live ones)." };
        var timeout = new Option<double>("--request-timeout-ms") { Description = "Wait for a reply before resending.", DefaultValueFactory = _ => 5000 };
        var publishTimeout = new Option<double>("--publish-timeout-ms") { Description = "Base wait for the broker's acknowledgement of a publish; it grows with the payload over the measured uplink (see --transfer-timeout-cap-s).", DefaultValueFactory = _ => 3000 };
        var transferCap = new Option<double>("--transfer-timeout-cap-s") { Description = "Upper bound on a publish or reply timeout grown for a big payload (base + bytes / measured uplink × 3); a round that cannot go up within it makes γ step down (greedy, or with --adapt-in-sampling), or fails the generation with the reason.", DefaultValueFactory = _ => 60 };
        var stateDir = new Option<string?>("--state-dir") { Description = "Save generations in progress here after every round; a restarted process resumes them." };
        var giveUp = new Option<double>("--give-up-s") { Description = "Fail when no verifier has answered for this long (link down, none online).", DefaultValueFactory = _ => 600 };
        var syncRounds = new Option<int>("--state-sync-rounds") { Description = "With --state-dir: fsync the session journal after this many rounds (a power cut loses at most the rounds since, which are decoded again).", DefaultValueFactory = _ => 16 };
        var syncMs = new Option<double>("--state-sync-ms") { Description = "With --state-dir: fsync the journal at the first round this long after the last fsync.", DefaultValueFactory = _ => 5000 };
        var level = LevelOption.Create();
        var command = new Command("edge", "Run a draft worker: drafts with the small model, verifies through a verifier over MQTT.") { deviceId, verifier, timeout, publishTimeout, transferCap, stateDir, syncRounds, syncMs, giveUp, level };
        common.AddBroker(command);
        common.AddGeneration(command, speculative: true);
        command.Add(common.Sequential);
        command.SetAction(async (result, ct) =>
        {
            var pinned = LevelOption.Parse(result.GetValue(level), bad => throw new CliError($"--level {bad}"));
            var options = new EdgeOptions
            {
                DeviceId = result.GetValue(deviceId)!,
                VerifierId = result.GetValue(verifier),
                Broker = common.ParseBroker(result),
                Username = result.GetValue(common.Username),
                Password = common.PasswordOf(result),
                Tls = common.Transport.Parse(result, common.ParseBroker(result)),
                RequestTimeout = TimeSpan.FromMilliseconds(result.GetValue(timeout)),
                PublishTimeout = result.GetValue(publishTimeout) is var pt && double.IsFinite(pt) && pt is > 0 and <= 600_000
                    ? TimeSpan.FromMilliseconds(pt)
                    : throw new CliError($"--publish-timeout-ms must be between 0 and 600000, got {result.GetValue(publishTimeout)}"),
                TransferTimeoutCap = result.GetValue(transferCap) is var cap && double.IsFinite(cap) && cap is > 0 and <= 3600
                    ? TimeSpan.FromSeconds(cap)
                    : throw new CliError($"--transfer-timeout-cap-s must be between 0 and 3600, got {result.GetValue(transferCap)}"),
                StateDirectory = result.GetValue(stateDir),
                StateJournal = new Edge.Resilience.JournalPolicy
                {
                    SyncEveryRounds = result.GetValue(syncRounds) is >= 1 and var rounds ? rounds : throw new CliError($"--state-sync-rounds must be at least 1, got {result.GetValue(syncRounds)}"),
                    SyncInterval = double.IsFinite(result.GetValue(syncMs)) && result.GetValue(syncMs) is >= 0 and <= 86_400_000
                        ? TimeSpan.FromMilliseconds(result.GetValue(syncMs))
                        : throw new CliError($"--state-sync-ms must be between 0 and 86400000, got {result.GetValue(syncMs)}"),
                },
                GiveUpAfter = TimeSpan.FromSeconds(result.GetValue(giveUp)),
                AdaptiveGamma = result.GetValue(common.AdaptiveGamma),
                Sequential = result.GetValue(common.Sequential),
                AdaptGammaInSampling = result.GetValue(common.AdaptInSampling) || pinned is > DegradationLevel.Normal, // asking for a rung below normal is asking for its γ
                PinnedLevel = pinned,
            };
            if (options.Validate() is { } bad)
            {
                throw new CliError(bad);
            }

            var samples = common.SampleCount(result);
            common.Settings(result, 0, options.DeviceId);
            using var logging = Runtime.Logging(result.GetValue(common.Verbose));
            using var models = common.LoadModels(result, needDraft: true, needTarget: false);
            await using var worker = new DraftWorker(options, models.Draft!, logging.CreateLogger<DraftWorker>());
            await worker.StartAsync(ct).ConfigureAwait(false);
            await GenerationLoop.RunAsync(worker, models, common, result, samples, options.DeviceId, ct).ConfigureAwait(false);
            return 0;
        });
        return command;
    }
}

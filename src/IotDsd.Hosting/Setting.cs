namespace IotDsd.Hosting;

/// <summary>
/// One setting of a service role: its configuration key (appsettings JSON path), its environment variable
/// (<c>IOTDSD_</c> + key with <c>__</c> for <c>:</c>), its command-line flag, its default and what it does.
/// </summary>
internal sealed record Setting(string Key, string Default, string Description, string? Flag = null, bool Secret = false)
{
    public string EnvironmentVariable => "IOTDSD_" + Key.Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant();

    /// <summary>An on/off setting (its default is true or false): its flag takes no value (<c>--tls</c>; <c>--tls false</c> also parses).</summary>
    public bool IsSwitch => bool.TryParse(Default, out _);

    /// <summary>Every place the setting can be given, for error messages; a switch is shown turned on.</summary>
    public string Places => (Flag, IsSwitch) switch
    {
        (null, false) => $"\"{Key}\" in the config file or {EnvironmentVariable}",
        (null, true) => $"\"{Key}\": true in the config file or {EnvironmentVariable}=true",
        (_, false) => $"\"{Key}\" in the config file, {EnvironmentVariable} or {Flag}",
        (_, true) => $"\"{Key}\": true in the config file, {EnvironmentVariable}=true or the flag {Flag}",
    };
}

/// <summary>The settings of the long-running roles, in documentation order.</summary>
internal static class Settings
{
    public static readonly Setting Broker = new("Mqtt:Broker", "127.0.0.1:1883", "MQTT 5 broker as HOST:PORT.", "--broker");
    public static readonly Setting Username = new("Mqtt:Username", "", "MQTT user name (with ACLs: the device id).", "--username");
    public static readonly Setting Password = new("Mqtt:Password", "", "MQTT password. Prefer Mqtt:PasswordFile; IOTDSD_MQTT_PASSWORD is also read.", "--password", Secret: true);
    public static readonly Setting PasswordFile = new("Mqtt:PasswordFile", "", "File whose first line is the MQTT password (systemd: $CREDENTIALS_DIRECTORY/mqtt-password).", "--password-file");

    public static readonly Setting DeviceId = new("Edge:DeviceId", "host name, lower case", "Device id: a topic level; must match the broker identity when ACLs confine devices.", "--device-id");
    public static readonly Setting PinVerifier = new("Edge:VerifierId", "", "Pin a verifier id; empty discovers the live ones from their retained status.", "--verifier");
    public static readonly Setting RequestTimeout = new("Edge:RequestTimeoutMs", "5000", "Wait for a reply before resending the same round.", "--request-timeout-ms");
    public static readonly Setting MaxAttempts = new("Edge:MaxAttempts", "6", "Invalid verdicts (protocol violations) in one generation before it fails closed; unanswered requests are resent until no reply has come for 10 minutes.");
    public static readonly Setting DiscoveryTimeout = new("Edge:DiscoveryTimeoutMs", "15000", "Wait for a verifier to be online.");
    public static readonly Setting DraftModel = new("Edge:DraftModel", "", "Draft model directory; empty: the shipped pair's draft ($IOTDSD_PAIR: stories by default, or ngram; built into $IOTDSD_MODEL_CACHE).", "--draft");
    public static readonly Setting StateDirectory = new("Edge:StateDirectory", "$STATE_DIRECTORY, else ~/.local/state/iotdsd", "Where the device keeps its state: completions.jsonl, the generation in progress (a restart resumes it), the run's next job (service.json) and the presence counters.", "--state-dir");
    public static readonly Setting PromptFile = new("Edge:PromptFile", "", "Prompts, one per line, generated in turn; empty: stay connected and idle.", "--prompt-file");
    public static readonly Setting JobInterval = new("Edge:JobIntervalMs", "5000", "Pause between two generations.");
    public static readonly Setting MaxJobs = new("Edge:MaxJobs", "0", "Generations before the device idles; 0 for no limit.");
    public static readonly Setting MaxTokens = new("Edge:MaxTokens", "200", "Tokens per generation.", "--max-tokens");
    public static readonly Setting Mode = new("Edge:Mode", "", "greedy, dsd, dssd or rsr; empty: rsr when sampling, greedy at temperature 0.", "--mode");
    public static readonly Setting Temperature = new("Edge:Temperature", "0.7", "Sampling temperature; 0 is greedy.", "--temperature");
    public static readonly Setting TopK = new("Edge:TopK", "0", "Keep the k most likely tokens; 0 is off.");
    public static readonly Setting TopP = new("Edge:TopP", "1", "Nucleus sampling mass; 1 is off.");
    public static readonly Setting Gamma = new("Edge:Gamma", "4", "Draft tokens per round.", "--gamma");
    public static readonly Setting Sequential = new("Edge:Sequential", "false", "One chain of Edge:Gamma drafts a round, one round in flight, no adaptation (the baseline); false: the shape controller chooses each greedy round's shape (depth from Edge:Gamma up to 16), sampling modes keep Edge:Gamma.", "--sequential");
    public static readonly Setting Level = new("Edge:Level", "", "Pin the degradation ladder: normal, reduced-gamma, gamma-1 or verifier-decoding; empty lets it move with the link.", "--level");
    public static readonly Setting Seed = new("Edge:Seed", "42", "Seed; randomness is derived from (seed, session, round, position).", "--seed");

    public static readonly Setting VerifierId = new("Verifier:Id", "verifier-1", "Verifier id (a topic level).", "--id");
    public static readonly Setting TargetModel = new("Verifier:TargetModel", "", "Target model directory; empty: the shipped pair's target ($IOTDSD_PAIR: stories by default, or ngram).", "--target");
    public static readonly Setting MaxBatch = new("Verifier:MaxBatch", "32", "Most rounds verified in one forward pass.", "--max-batch");
    public static readonly Setting BatchWait = new("Verifier:BatchWaitMs", "1", "Longest a round waits for others to join its batch.", "--batch-wait-ms");
    public static readonly Setting SessionIdle = new("Verifier:SessionIdleTimeoutS", "600", "Sessions unused this long are dropped (the device re-opens).");
    public static readonly Setting MaxSessions = new("Verifier:MaxSessions", "10000", "Most sessions held at once; more are refused as overloaded.");
    public static readonly Setting VerifierStateDirectory = new("Verifier:StateDirectory", "$STATE_DIRECTORY, else none", "Where the retained status's boot and connection counters are kept so a restart continues them; none: they restart at 1.", "--state-dir");
    public static readonly Setting CapacityWeight = new("Verifier:CapacityWeight", "1", "Relative capacity (2: twice a default verifier); devices place new sessions by load per unit of it.", "--capacity-weight");
    public static readonly Setting KvBudgetMb = new("Verifier:KvBudgetMb", "0", "Global KV-cache budget in MiB (cached tokens × the target's bytes per token); an open or round past it evicts sessions idle 30 s, else is refused as overloaded. 0: half the available memory.", "--kv-budget-mb");
    public static readonly Setting LoadRefresh = new("Verifier:LoadRefreshMs", "2000", "Longest gap between retained status refreshes carrying the load while it changes.");
    public static readonly Setting WillDelay = new("Verifier:WillDelayS", "5", "Seconds the broker waits after losing the verifier before publishing its offline will; devices fail over then (0: at once).", "--will-delay-s");

    public static readonly Setting Provider = new("Models:Provider", "", "Where the models run: cpu or cuda; Models:TargetProvider and Models:DraftProvider override it per model. Empty: $IOTDSD_EXECUTION_PROVIDER, else cpu.", "--provider");
    public static readonly Setting TargetProvider = new("Models:TargetProvider", "", "Where the target model runs: cpu or cuda; empty: $IOTDSD_TARGET_PROVIDER, else Models:Provider.", "--target-provider");
    public static readonly Setting DraftProvider = new("Models:DraftProvider", "", "Where the draft model runs: cpu or cuda; empty: $IOTDSD_DRAFT_PROVIDER, else Models:Provider.", "--draft-provider");
    public static readonly Setting ProviderLibrary = new("Models:ProviderLibrary", "", "CUDA: full path of libonnxruntime_providers_cuda.so (ONNX Runtime 1.32, CUDA 13, cuDNN 9); empty: $IOTDSD_PROVIDER_LIBRARY.", "--provider-library");

    public static readonly Setting DiagnosticsEnabled = new("Diagnostics:Enabled", "true", "Publish retained metrics and answer diagnostic commands over MQTT.");
    public static readonly Setting MetricsInterval = new("Diagnostics:MetricsIntervalMs", "5000", "Period of the retained metrics publish.", "--metrics-interval-ms");
    public static readonly Setting MaxOffline = new("Health:MaxOfflineMs", "600000", "Under a systemd watchdog: stop the heartbeat (so systemd restarts the service) once the broker link has been down this long.");
    public static readonly Setting LogLevel = new("Logging:Level", "Information", "Trace, Debug, Information, Warning, Error or Critical.", "--log-level");

    public static readonly Setting TlsCa = new("Mqtt:TlsCa", "", "Use TLS; PEM CA that signs the broker's certificate (empty with Mqtt:Tls: the system store).", "--tls-ca");
    public static readonly Setting Tls = new("Mqtt:Tls", "false", "Use TLS, validating the broker (implied by any Mqtt:Tls* setting).", "--tls");
    public static readonly Setting TlsCert = new("Mqtt:TlsCert", "", "PEM client certificate (its CN is the identity where the broker maps certificates to users).", "--tls-cert");
    public static readonly Setting TlsKey = new("Mqtt:TlsKey", "", "PEM private key of Mqtt:TlsCert (empty: in the same file).", "--tls-key");
    public static readonly Setting TlsServerName = new("Mqtt:TlsServerName", "", "Name the broker's certificate must carry (empty: the broker host).", "--tls-server-name");
    public static readonly Setting InsecurePlaintext = new("Mqtt:InsecurePlaintext", "false", "Allow plain TCP to a broker that is not on loopback.", "--insecure-plaintext");
    public static readonly Setting[] Mqtt = [Broker, Username, Password, PasswordFile, Tls, TlsCa, TlsCert, TlsKey, TlsServerName, InsecurePlaintext];
    public static readonly Setting[] Common = [DiagnosticsEnabled, MetricsInterval, MaxOffline, LogLevel];

    public static readonly Setting[] Device =
        [.. Mqtt, DeviceId, PinVerifier, RequestTimeout, MaxAttempts, DiscoveryTimeout, DraftModel, Provider, DraftProvider, ProviderLibrary, StateDirectory, PromptFile, JobInterval, MaxJobs,
            MaxTokens, Mode, Temperature, TopK, TopP, Gamma, Sequential, Seed, Level, .. Common];

    public static readonly Setting[] Verifier = [.. Mqtt, VerifierId, TargetModel, Provider, TargetProvider, ProviderLibrary, MaxBatch, BatchWait, SessionIdle, MaxSessions, VerifierStateDirectory, CapacityWeight, KvBudgetMb, LoadRefresh, WillDelay, .. Common];
}

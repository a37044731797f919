using IotDsd.Inference.Models;
using System.CommandLine;
using System.Globalization;
using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary>Options shared by the generating commands, and their validation into settings.</summary>
internal sealed class CommonOptions
{
    public Option<string> Prompt { get; } = new("--prompt") { Description = "Text to continue.", Required = true };

    /// <summary>The same flag where a default prompt set stands in (<c>loadgen</c>).</summary>
    public Option<string?> PromptOrDefaultSet { get; } = new("--prompt") { Description = "Text every device continues (default: the shipped prompt set, one prompt per device in turn)." };
    public Option<int> MaxTokens { get; } = new("--max-tokens") { Description = "Tokens to generate.", DefaultValueFactory = _ => 200 };
    public Option<string?> Mode { get; } = new("--mode") { Description = "greedy, dsd, dssd or rsr (default: rsr when sampling, greedy at temperature 0)." };
    public Option<float> Temperature { get; } = new("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => 0.7f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Keep the k most likely tokens; 0 is off.", DefaultValueFactory = _ => 0 };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Nucleus sampling mass; 1 is off.", DefaultValueFactory = _ => 1f };
    public Option<int> Gamma { get; } = new("--gamma") { Description = "Draft tokens per round.", DefaultValueFactory = _ => 4 };
    public Option<ulong> Seed { get; } = new("--seed") { Description = "Seed; randomness is derived from (seed, session, round, position).", DefaultValueFactory = _ => 42UL };
    public Option<int> Samples { get; } = new("--samples") { Description = "Independent completions of the prompt.", DefaultValueFactory = _ => 1 };
    public Option<bool> AdaptiveGamma { get; } = new("--adaptive-gamma") { Description = "Choose γ each round for goodput, at most --gamma (greedy; sampling keeps --gamma so a seed names one text)." };
    public Option<bool> Sequential { get; } = new("--sequential") { Description = "The baseline round loop: one chain of --gamma per round, one round in flight, no adaptation (by default greedy sends each round ahead of the previous verdict)." };
    public Option<bool> AdaptInSampling { get; } = new("--adapt-in-sampling") { Description = "Let γ change in sampling modes too (with --adaptive-gamma, on the degradation ladder, and when a round cannot go up within the transfer timeout cap): the output keeps the target's distribution exactly, but a seed no longer names one text." };
    public Option<bool> Json { get; } = new("--json") { Description = "One JSON object per completion on stdout." };
    public Option<string?> Draft { get; } = new("--draft") { Description = "Draft model directory (default: the shipped pair's draft, see --pair)." };
    public Option<string?> Target { get; } = new("--target") { Description = "Target model directory (default: the shipped pair's target)." };
    public Option<string?> Pair { get; } = new("--pair") { Description = "Shipped pair used where --draft or --target is not given: stories (the default; a trained Llama model, stories260K, with a distilled n-gram draft) or ngram (byte n-grams of order 4 and 5). Default: $IOTDSD_PAIR, else stories." };
    public Option<string> Broker { get; } = new("--broker") { Description = "MQTT 5 broker as HOST:PORT.", Required = true };
    public Option<string?> Username { get; } = new("--username") { Description = "MQTT user name." };
    public Option<string?> Password { get; } = new("--password") { Description = "MQTT password (prefer IOTDSD_MQTT_PASSWORD)." };
    public TransportOptions Transport { get; } = new();
    public Option<bool> Verbose { get; } = new("--verbose") { Description = "Log informational messages to stderr." };
    public Option<string?> CalibrationOut { get; } = new("--calibration-out") { Description = "Write a calibration file of this run for iotdsd sim --calibration." };

    public void AddGeneration(Command command, bool speculative, bool defaultPrompts = false)
    {
        if (defaultPrompts)
        {
            command.Add(PromptOrDefaultSet);
        }
        else
        {
            command.Add(Prompt);
        }

        command.Add(MaxTokens);
        if (speculative)
        {
            command.Add(Mode);
            command.Add(Gamma);
            command.Add(AdaptiveGamma);
            command.Add(AdaptInSampling);
            command.Add(CalibrationOut);
        }

        command.Add(Temperature);
        command.Add(TopK);
        command.Add(TopP);
        command.Add(Seed);
        command.Add(Samples);
        command.Add(Json);
        command.Add(Draft);
        command.Add(Target);
        command.Add(Pair);
        command.Add(Verbose);
    }

    /// <summary>Loads the models the command's --draft, --target and --pair name.</summary>
    public ModelPair LoadModels(ParseResult result, bool needDraft, bool needTarget = true) =>
        ModelPair.Load(result.GetValue(Draft), result.GetValue(Target), needDraft, needTarget, pair: result.GetValue(Pair));

    public void AddBroker(Command command)
    {
        command.Add(Broker);
        command.Add(Username);
        command.Add(Password);
        Transport.AddTo(command);
    }

    public BrokerAddress ParseBroker(ParseResult result) =>
        BrokerAddress.TryParse(result.GetValue(Broker), out var error) ?? throw new CliError(error!);

    public string? PasswordOf(ParseResult result) =>
        result.GetValue(Password) ?? Environment.GetEnvironmentVariable("IOTDSD_MQTT_PASSWORD");

    /// <summary>Validated settings of sample <paramref name="index"/>.</summary>
    public SessionSettings Settings(ParseResult result, int index, string sessionPrefix, bool speculative = true)
    {
        var temperature = result.GetValue(Temperature);
        var modeText = speculative ? result.GetValue(Mode) : null;
        DecodingMode mode;
        if (modeText is null)
        {
            mode = temperature <= 0 ? DecodingMode.Greedy : DecodingMode.Rsr;
        }
        else if (!DecodingModes.TryParse(modeText, out mode))
        {
            throw new CliError($"--mode must be greedy, dsd, dssd or rsr, got '{modeText}'");
        }
        else if (mode == DecodingMode.Greedy && temperature != 0)
        {
            // Greedy is temperature 0: the default temperature gives way; one given explicitly conflicts.
            temperature = result.GetResult(Temperature) is { Implicit: false }
                ? throw new CliError(string.Create(CultureInfo.InvariantCulture, $"--mode greedy conflicts with --temperature {temperature}: greedy decoding is temperature 0; drop --temperature or use --mode rsr (or dsd, dssd) to sample"))
                : 0f;
        }

        var sampling = new SamplingParams(temperature, result.GetValue(TopK), result.GetValue(TopP));

        var seed = DeterministicRandom.SampleSeed(result.GetValue(Seed), index);
        var settings = new SessionSettings
        {
            SessionId = string.Create(CultureInfo.InvariantCulture, $"{sessionPrefix}-{result.GetValue(Seed):x}-{index}"),
            Mode = mode,
            Sampling = sampling,
            Seed = seed,
            MaxTokens = result.GetValue(MaxTokens),
            Gamma = speculative ? result.GetValue(Gamma) : 4,
        };
        if (settings.Validate() is { } bad)
        {
            throw new CliError(ToFlags(bad));
        }

        return settings;
    }

    public int SampleCount(ParseResult result)
    {
        var n = result.GetValue(Samples);
        return n is >= 1 and <= 100_000 ? n : throw new CliError($"--samples must be between 1 and 100000, got {n}");
    }

    private static string ToFlags(string reason) => reason
        .Replace("temperature", "--temperature", StringComparison.Ordinal)
        .Replace("top-k", "--top-k", StringComparison.Ordinal)
        .Replace("top-p", "--top-p", StringComparison.Ordinal)
        .Replace("max tokens", "--max-tokens", StringComparison.Ordinal)
        .Replace("gamma", "--gamma", StringComparison.Ordinal)
        .Replace("mode greedy", "--mode greedy", StringComparison.Ordinal);
}

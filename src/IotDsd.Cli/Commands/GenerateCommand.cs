using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using IotDsd.Core.Speculative;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd generate</c>: plain autoregressive decoding with the target alone — the lossless reference.</summary>
internal static class GenerateCommand
{
    public static Command Create(CommonOptions common)
    {
        var command = new Command("generate", "Generate with the target model alone (no draft, no broker): the reference output.");
        common.AddGeneration(command, speculative: false);
        command.SetAction(result =>
        {
            var samples = common.SampleCount(result);
            common.Settings(result, 0, "demo", speculative: false);
            var json = result.GetValue(common.Json);
            using var models = common.LoadModels(result, needDraft: false);
            var promptText = result.GetValue(common.Prompt)!;
            var prompt = models.EncodePrompt(promptText);

            for (var i = 0; i < samples; i++)
            {
                // Same session ids as `demo`, so a seed names the same randomness in both.
                var settings = models.WithStops(common.Settings(result, i, "demo", speculative: false));
                var stream = models.Tokenizer.CreateStreamDecoder(atStart: promptText.Length == 0);
                var text = new System.Text.StringBuilder();
                if (!json)
                {
                    Console.Out.Write(promptText);
                }

                var started = Stopwatch.GetTimestamp();
                TimeSpan? first = null;
                var tokens = Autoregressive.Generate(models.Target, prompt, settings.Sampling, settings.Seed, settings.SessionId, settings.MaxTokens, [.. settings.StopTokens], token =>
                {
                    first ??= Stopwatch.GetElapsedTime(started);
                    var piece = stream.Append(token);
                    text.Append(piece);
                    if (!json)
                    {
                        Console.Out.Write(piece);
                    }
                });
                var elapsed = Stopwatch.GetElapsedTime(started);
                var tail = stream.Flush();
                text.Append(tail);
                var rate = tokens.Length / Math.Max(elapsed.TotalSeconds, 1e-9);
                var stopReason = tokens.Length > 0 && settings.IsStop(tokens[^1]) ? "eos" : "max_tokens";
                if (json)
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["text"] = text.ToString(),
                        ["tokens"] = tokens.Length,
                        ["tokens_per_s"] = Math.Round(rate, 1),
                        ["time_to_first_token_ms"] = Math.Round((first ?? elapsed).TotalMilliseconds, 3),
                        ["stop_reason"] = stopReason,
                        ["mode"] = "target-only",
                        ["seed"] = settings.Seed,
                        ["session"] = settings.SessionId,
                    }));
                }
                else
                {
                    Console.Out.WriteLine(tail);
                    Console.Out.WriteLine();
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[target-only seed={settings.Seed}] {tokens.Length} tokens, {rate:0} tokens/s{(stopReason == "eos" ? ", stopped at end of sequence" : "")}"));
                }
            }

            return 0;
        });
        return command;
    }
}

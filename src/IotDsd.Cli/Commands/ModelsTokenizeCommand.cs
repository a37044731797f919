using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd models tokenize</c>: the ids and token strings a tokenizer gives a text, to check that a draft and a
/// target tokenize alike.
/// </summary>
internal static class ModelsTokenizeCommand
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "A Hugging Face tokenizer.json, or a model directory (one holding tokenizer.json, or a manifest.json).", Required = true };
        var text = new Option<string>("--text") { Description = "The text to tokenize.", Required = true };
        var special = new Option<bool>("--add-special-tokens") { Description = "Add the special tokens the tokenizer's post-processor adds (a BOS such as <s>)." };
        var json = new Option<bool>("--json") { Description = "Print {\"ids\": [...], \"tokens\": [...]}." };
        var command = new Command("tokenize", "Print the token ids and token strings of a text.") { tokenizer, text, special, json };
        command.SetAction(result =>
        {
            var path = result.GetValue(tokenizer)!;
            var input = result.GetValue(text)!;
            var (ids, tokens) = Tokenize(path, input, result.GetValue(special));
            if (result.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["ids"] = ids, ["tokens"] = tokens }, Relaxed));
                return 0;
            }

            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{ids.Length} tokens"));
            for (var i = 0; i < ids.Length; i++)
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{ids[i]}\t{JsonSerializer.Serialize(tokens[i], Relaxed)}"));
            }

            return 0;
        });
        return command;
    }

    private static (int[] Ids, string[] Tokens) Tokenize(string path, string text, bool addSpecialTokens)
    {
        try
        {
            if (Directory.Exists(path) && !File.Exists(Path.Combine(path, "tokenizer.json")))
            {
                // A model directory with a manifest (the byte-level n-gram models among them).
                var byManifest = TokenizerFactory.ForModelDirectory(path);
                if (byManifest is HfBpeTokenizer hf)
                {
                    var hfIds = hf.Encode(text, addSpecialTokens);
                    return (hfIds, [.. hfIds.Select(id => hf.IdToToken(id) ?? string.Empty)]);
                }

                var byteIds = byManifest.Encode(text);
                return (byteIds, [.. byteIds.Select(id => string.Create(CultureInfo.InvariantCulture, $"<0x{id:X2}>"))]);
            }

            var file = Directory.Exists(path) ? Path.Combine(path, "tokenizer.json") : path;
            if (!File.Exists(file))
            {
                throw new CliError($"--tokenizer {path}: no such file or directory");
            }

            var tok = HfBpeTokenizer.Load(file);
            var ids = tok.Encode(text, addSpecialTokens);
            return (ids, [.. ids.Select(id => tok.IdToToken(id) ?? string.Empty)]);
        }
        catch (TokenizerFormatException e)
        {
            throw new CliError(e.Message);
        }
    }
}

using System.CommandLine;
using System.Globalization;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Transformer;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd models build</c>: writes a model directory (ONNX file, manifest, tokenizer) that any command can load
/// with --draft/--target.
/// </summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        var kind = new Option<string>("--kind") { Description = "Model kind: ngram or transformer.", DefaultValueFactory = _ => "ngram" };
        var role = new Option<string>("--role") { Description = "draft or target.", Required = true };
        var order = new Option<int?>("--order") { Description = "ngram: order, 2-7 (default: 4 for a draft, 5 for a target)." };
        var preset = new Option<string>("--preset") { Description = "transformer: tiny (tests) or small (GPT-2-small shape). A draft keeps the target's first quarter of layers.", DefaultValueFactory = _ => "tiny" };
        var seed = new Option<ulong>("--seed") { Description = "transformer: weight seed; build draft and target with the same seed.", DefaultValueFactory = _ => 1UL };
        var corpus = new Option<string?>("--corpus") { Description = "UTF-8 text file to train (ngram) or fit the output layer (transformer) on, records separated by lines holding '%' (default: the shipped corpus)." };
        var output = new Option<string>("--out") { Description = "Directory to write.", Required = true };
        var build = new Command("build", "Build a model directory.") { kind, role, order, preset, seed, corpus, output };
        build.SetAction(result =>
        {
            var k = result.GetValue(kind);
            if (k is not ("ngram" or "transformer"))
            {
                throw new CliError($"--kind must be ngram or transformer, got '{k}'");
            }

            var r = result.GetValue(role);
            if (r is not ("draft" or "target"))
            {
                throw new CliError($"--role must be draft or target, got '{r}'");
            }

            var corpusPath = result.GetValue(corpus);
            byte[] text;
            try
            {
                text = corpusPath is null ? DefaultModels.Corpus.ToArray() : File.ReadAllBytes(corpusPath);
            }
            catch (IOException ex)
            {
                throw new CliError($"cannot read --corpus {corpusPath}: {ex.Message}");
            }

            var corpusName = corpusPath is null ? DefaultModels.CorpusName : Path.GetFileName(corpusPath);
            var dir = result.GetValue(output)!;
            if (k == "transformer")
            {
                var p = result.GetValue(preset)!;
                if (!TransformerConfig.PresetNames.Contains(p))
                {
                    throw new CliError($"--preset must be {string.Join(" or ", TransformerConfig.PresetNames)}, got '{p}'");
                }

                if (text.Length < 2)
                {
                    throw new CliError($"--corpus {corpusPath} holds fewer than two bytes");
                }

                var m = TransformerModelBuilder.Build(p, r, result.GetValue(seed), dir, text, corpusName);
                var c = m.Transformer!;
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {dir}: {m.Name} ({c.Layers} layers, {c.Hidden} wide, {c.Heads} heads, vocabulary {c.VocabSize}, seed {c.Seed})"));
                return 0;
            }

            var n = result.GetValue(order) ?? (r == "draft" ? DefaultModels.DraftOrder : DefaultModels.TargetOrder);
            if (n is < 2 or > 7)
            {
                throw new CliError($"--order must be between 2 and 7, got {n}");
            }

            var manifest = NgramModelBuilder.Build(text, n, r, dir, corpusName);
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {dir}: {manifest.Name}, held-out {manifest.HeldoutBitsPerByte:0.000} bits/byte"));
            return 0;
        });
        return new Command("models", "Model directories.") { build };
    }
}

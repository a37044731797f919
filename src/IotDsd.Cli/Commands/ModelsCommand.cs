using System.CommandLine;
using System.Globalization;
using IotDsd.Inference.Ngram;

namespace IotDsd.Cli.Commands;

/// <summary><c>iotdsd models build</c>: writes a model directory (ONNX file, manifest) that any command can load with --draft/--target.</summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        var kind = new Option<string>("--kind") { Description = "Model kind: ngram.", DefaultValueFactory = _ => "ngram" };
        var role = new Option<string>("--role") { Description = "draft or target.", Required = true };
        var order = new Option<int?>("--order") { Description = "n-gram order, 2-7 (default: 4 for a draft, 5 for a target)." };
        var corpus = new Option<string?>("--corpus") { Description = "UTF-8 text file to train on, records separated by lines holding '%' (default: the shipped corpus)." };
        var output = new Option<string>("--out") { Description = "Directory to write.", Required = true };
        var build = new Command("build", "Build a model directory.") { kind, role, order, corpus, output };
        build.SetAction(result =>
        {
            if (result.GetValue(kind) != "ngram")
            {
                throw new CliError($"--kind must be ngram (transformer models are not built by this version), got '{result.GetValue(kind)}'");
            }

            var r = result.GetValue(role);
            if (r is not ("draft" or "target"))
            {
                throw new CliError($"--role must be draft or target, got '{r}'");
            }

            var n = result.GetValue(order) ?? (r == "draft" ? DefaultModels.DraftOrder : DefaultModels.TargetOrder);
            if (n is < 2 or > 7)
            {
                throw new CliError($"--order must be between 2 and 7, got {n}");
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

            var manifest = NgramModelBuilder.Build(text, n, r, result.GetValue(output)!, corpusPath is null ? DefaultModels.CorpusName : Path.GetFileName(corpusPath));
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {result.GetValue(output)}: {manifest.Name}, held-out {manifest.HeldoutBitsPerByte:0.000} bits/byte"));
            return 0;
        });
        return new Command("models", "Model directories.") { build };
    }
}

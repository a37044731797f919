using System.Security.Cryptography;
using IotDsd.Inference.Models;

namespace IotDsd.Inference.Ngram;

/// <summary>Trains a Kneser–Ney byte model on a corpus and writes a model directory (model.onnx + manifest.json).</summary>
public static class NgramModelBuilder
{
    /// <summary>Every this-many-th record (the last of each group) is held out to measure bits per byte.</summary>
    public const int HeldOutEvery = 20;

    public const string ModelFileName = "model.onnx";

    /// <summary>
    /// Builds a model of <paramref name="order"/> from <paramref name="corpus"/> (fortune-style text: records
    /// separated by <c>%</c> lines) into <paramref name="outDir"/>, which is created if needed; existing
    /// model.onnx and manifest.json are overwritten. Returns the manifest written.
    /// </summary>
    public static ModelManifest Build(byte[] corpus, int order, string role, string outDir, string corpusName = "custom")
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentException.ThrowIfNullOrWhiteSpace(role);
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        var records = NgramCorpus.SplitRecords(corpus);
        var train = new List<byte[]>(records.Count);
        var heldOut = new List<byte[]>(records.Count / HeldOutEvery + 1);
        for (int i = 0; i < records.Count; i++)
            (i % HeldOutEvery == HeldOutEvery - 1 ? heldOut : train).Add(records[i]);
        if (train.Count == 0) throw new ArgumentException("The corpus holds no training records.", nameof(corpus));

        var model = KneserNeyModel.Train(train, order);
        string name = $"ngram-{order}-{role}";
        var onnx = NgramOnnxCompiler.Compile(model, name.Replace('-', '_'));

        Directory.CreateDirectory(outDir);
        File.WriteAllBytes(Path.Combine(outDir, ModelFileName), onnx);
        var manifest = new ModelManifest
        {
            Kind = "ngram",
            Role = role,
            Name = name,
            VocabSize = KneserNeyModel.VocabSize,
            Tokenizer = "bytes",
            Order = order,
            Files = new() { [ModelManifest.ModelFileKey] = ModelFileName },
            Sha256 = new() { [ModelManifest.ModelFileKey] = Convert.ToHexStringLower(SHA256.HashData(onnx)) },
            Corpus = new CorpusInfo(corpusName, corpus.LongLength, Convert.ToHexStringLower(SHA256.HashData(corpus))),
            Discounts = [.. model.Discounts.Select(d => Math.Round(d, 6))],
            HeldoutBitsPerByte = heldOut.Count == 0 ? null : Math.Round(model.BitsPerByte(heldOut), 4),
        };
        File.WriteAllText(Path.Combine(outDir, ModelManifest.FileName), manifest.ToJson() + "\n");
        return manifest;
    }
}

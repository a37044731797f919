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
    /// model.onnx and manifest.json are overwritten. Returns the manifest written. A <paramref name="vocabSize"/> above
    /// 256 pads the vocabulary (ids past the bytes are never predicted), so the model can pair with a target whose
    /// byte-level vocabulary is padded to a real model's size.
    /// </summary>
    public static ModelManifest Build(byte[] corpus, int order, string role, string outDir, string corpusName = "custom", int vocabSize = KneserNeyModel.VocabSize)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        return Build(NgramCorpus.SplitRecords(corpus), order, role, outDir, corpusName, vocabSize,
            new CorpusInfo(corpusName, corpus.LongLength, Convert.ToHexStringLower(SHA256.HashData(corpus))));
    }

    /// <summary>As <see cref="Build(byte[], int, string, string, string, int)"/>, from records already split.</summary>
    public static ModelManifest Build(IReadOnlyList<byte[]> records, int order, string role, string outDir, string corpusName, int vocabSize = KneserNeyModel.VocabSize, CorpusInfo? corpus = null)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentException.ThrowIfNullOrWhiteSpace(role);
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        if (vocabSize < KneserNeyModel.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"The vocabulary must hold at least the {KneserNeyModel.VocabSize} bytes.");
        var train = new List<byte[]>(records.Count);
        var heldOut = new List<byte[]>(records.Count / HeldOutEvery + 1);
        for (int i = 0; i < records.Count; i++)
            (i % HeldOutEvery == HeldOutEvery - 1 ? heldOut : train).Add(records[i]);
        if (train.Count == 0) throw new ArgumentException("The corpus holds no training records.", nameof(records));

        var model = KneserNeyModel.Train(train, order);
        return Write(model, role, outDir, vocabSize, corpus ?? Describe(records, corpusName),
            heldOut.Count == 0 ? null : Math.Round(model.BitsPerByte(heldOut), 4));
    }

    /// <summary>Compiles <paramref name="model"/> and writes its directory (model.onnx + manifest.json).</summary>
    public static ModelManifest Write(KneserNeyModel model, string role, string outDir, int vocabSize, CorpusInfo corpus, double? heldOutBitsPerByte) =>
        Write(model, role, outDir, vocabSize, corpus, heldOutBitsPerByte, null);

    /// <summary>
    /// As above; <paramref name="companions"/> (role → source file) are copied in beside the model and named in the
    /// manifest — a token model's <c>tokenizer.json</c> and the configuration files that give its BOS and EOS.
    /// </summary>
    public static ModelManifest Write(KneserNeyModel model, string role, string outDir, int vocabSize, CorpusInfo corpus, double? heldOutBitsPerByte,
        IReadOnlyDictionary<string, string>? companions)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (vocabSize < model.Live)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"The vocabulary must hold at least the model's {model.Live} tokens.");
        int order = model.Order;
        string name = $"ngram-{order}-{role}";
        var onnx = NgramOnnxCompiler.Compile(model, name.Replace('-', '_'));

        Directory.CreateDirectory(outDir);
        File.WriteAllBytes(Path.Combine(outDir, ModelFileName), onnx);
        var files = new Dictionary<string, string> { [ModelManifest.ModelFileKey] = ModelFileName };
        var sha = new Dictionary<string, string> { [ModelManifest.ModelFileKey] = Convert.ToHexStringLower(SHA256.HashData(onnx)) };
        foreach (var (key, source) in companions ?? new Dictionary<string, string>())
        {
            var fileName = Path.GetFileName(source);
            File.Copy(source, Path.Combine(outDir, fileName), overwrite: true);
            files[key] = fileName;
            sha[key] = ModelDirectory.Sha256File(Path.Combine(outDir, fileName));
        }

        var manifest = new ModelManifest
        {
            Kind = "ngram",
            Role = role,
            Name = name,
            VocabSize = vocabSize,
            Tokenizer = files.ContainsKey(ModelManifest.TokenizerFileKey) ? Tokenizers.TokenizerFactory.HuggingFace : Tokenizers.TokenizerFactory.Bytes,
            Order = order,
            Files = files,
            Sha256 = sha,
            Corpus = corpus,
            Discounts = [.. model.Discounts.Select(d => Math.Round(d, 6))],
            HeldoutBitsPerByte = heldOutBitsPerByte,
        };
        File.WriteAllText(Path.Combine(outDir, ModelManifest.FileName), manifest.ToJson() + "\n");
        return manifest;
    }

    internal static CorpusInfo Describe(IReadOnlyList<byte[]> records, string name)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long bytes = 0;
        foreach (var r in records)
        {
            sha.AppendData(r);
            bytes += r.Length;
        }

        return new CorpusInfo(name, bytes, Convert.ToHexStringLower(sha.GetHashAndReset()));
    }
}

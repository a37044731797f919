using System.Text;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;
using IotDsd.Inference.Distillation;
using IotDsd.Inference.Llama;
using IotDsd.Inference.Models;
using IotDsd.Inference.Ngram;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests.Llama;

/// <summary>The shipped llama2.c model, imported once into a temporary directory.</summary>
public sealed class StoriesFixture : IDisposable
{
    public StoriesFixture()
    {
        Root = Directory.CreateTempSubdirectory("iotdsd-stories-").FullName;
        Dir = Path.Combine(Root, "target");
        Checkpoint = Llama2cCheckpoint.Parse(StoriesModels.CheckpointBytes(), "stories260K.bin");
        Tokenizer = SentencePieceBin.Parse(StoriesModels.TokenizerBytes(), "tok512.bin");
        Llama2cImporter.Import(Checkpoint, Tokenizer, "tok512.bin", Dir, StoriesModels.Name);
        Model = ModelDirectory.Load(Dir);
    }

    public string Root { get; }
    public string Dir { get; }
    public Llama2cCheckpoint Checkpoint { get; }
    public IReadOnlyList<SentencePieceBin.Entry> Tokenizer { get; }
    public ILanguageModel Model { get; }

    /// <summary>Text as llama2.c prints it: each piece with "▁" as a space and &lt;0xHH&gt; as that byte.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            var piece = Tokenizer[id].Piece;
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>')
                bytes.Add(Convert.ToByte(piece.Substring(3, 2), 16));
            else
                bytes.AddRange(Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' ')));
        }
        return Encoding.UTF8.GetString([.. bytes]);
    }

    public static string[] Words(string text) => text.Split((char[])[' ', '\n', '\t', '\r'], StringSplitOptions.RemoveEmptyEntries);

    public void Dispose()
    {
        Model.Dispose();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

public sealed class StoriesImportTests(StoriesFixture stories) : IClassFixture<StoriesFixture>
{
    private static string Reference => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Llama", "greedy-from-bos.txt"));

    [Fact]
    public void Checkpoint_Header_IsStories260K()
    {
        var s = stories.Checkpoint.Shape;
        Assert.Equal((64, 172, 5, 8, 4, 512, 512, true), (s.Dim, s.HiddenDim, s.Layers, s.Heads, s.KvHeads, s.VocabSize, s.SeqLen, s.SharedClassifier));
        Assert.Equal(512, stories.Tokenizer.Count);
        Assert.Equal(("<unk>", "<s>", "</s>", "<0x0A>"), (stories.Tokenizer[0].Piece, stories.Tokenizer[1].Piece, stories.Tokenizer[2].Piece, stories.Tokenizer[13].Piece));
    }

    [Fact]
    public void Greedy_FromBos_ReproducesPublishedOutputExactly()
    {
        var specials = SpecialTokens.Read(stories.Dir);
        var prompt = specials.Prompt([]);
        Assert.Equal([1], prompt);
        // llama2.c's 256 steps: BOS at position 0, then 256 sampled tokens; none of them ends the story.
        var ids = Autoregressive.Generate(stories.Model, prompt, SamplingParams.Greedy, 0, "bos", 256, [.. specials.Eos]);
        Assert.Equal(256, ids.Length);
        Assert.Equal(StoriesFixture.Words(Reference), StoriesFixture.Words(stories.Decode(ids)));

        // The tokenizer.json the import wrote decodes the same ids to the same text, character for character (run.c
        // ends its output with a newline): whole, and streamed from the start of the text, with no leading space.
        var hf = Assert.IsType<HfBpeTokenizer>(TokenizerFactory.ForModelDirectory(stories.Dir));
        Assert.Equal(Reference, hf.Decode([1, .. ids], skipSpecialTokens: true) + "\n");
        var stream = hf.CreateStreamDecoder(atStart: true, skipSpecialTokens: true);
        var text = string.Concat(ids.Select(stream.Append)) + stream.Flush();
        Assert.Equal(Reference, text + "\n");
    }

    [Fact]
    public void KvCache_IncrementalFeed_MatchesWholeSequence()
    {
        // The rotary angles follow the positions fed: feeding one token at a time gives the rows of one long feed.
        int v = stories.Model.VocabSize;
        int[] tokens = [1, 403, 407, 261, 378, 29, 412, 280];
        var whole = new float[tokens.Length * v];
        using (var seq = stories.Model.CreateSequence()) seq.Feed(tokens, whole);
        using var inc = stories.Model.CreateSequence();
        var row = new float[v];
        for (int i = 0; i < tokens.Length; i++)
        {
            inc.Feed([tokens[i]], row);
            for (int x = 0; x < v; x++) Assert.True(Math.Abs(whole[i * v + x] - row[x]) < 1e-3f, $"position {i}, token {x}: {whole[i * v + x]} vs {row[x]}");
        }
    }

    [Fact]
    public void ImportedDirectory_HasHuggingFaceFilesAndSpecialTokens()
    {
        foreach (var file in (string[])["model.onnx", "tokenizer.json", "config.json", "generation_config.json", "tokenizer_config.json", "manifest.json"])
            Assert.True(File.Exists(Path.Combine(stories.Dir, file)), file);
        var specials = SpecialTokens.Read(stories.Dir);
        Assert.Equal(1, specials.Bos);
        Assert.True(specials.AddBos);
        Assert.Equal([2, 1], specials.Eos);
        Assert.Equal(new HashSet<int> { 0, 1, 2 }, specials.Special.ToHashSet());
        var manifest = ModelDirectory.Validate(stories.Dir);
        Assert.Equal(512, manifest.VocabSize);

        // tokenizer.json is what Hugging Face's converter writes for tok512.bin.
        var reference = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Golden", "stories260K", "tokenizer.json")));
        var written = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(stories.Dir, "tokenizer.json")));
        Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(reference, written), "the imported tokenizer.json differs from Hugging Face's conversion");
        Assert.Equal(512, manifest.Transformer!.MaxPositions);
    }

    [Fact]
    public void Merges_RankedByMergedPieceScore()
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < stories.Tokenizer.Count; i++) ids[stories.Tokenizer[i].Piece] = i;
        var merges = SentencePieceBin.Merges(stories.Tokenizer);
        Assert.NotEmpty(merges);
        var scores = merges.Select(m => stories.Tokenizer[ids[m.Left + m.Right]].Score).ToList();
        for (int i = 1; i < scores.Count; i++) Assert.True(scores[i] <= scores[i - 1], $"merge {i} ranks above a higher score");
        Assert.All(merges, m => Assert.True(ids.ContainsKey(m.Left) && ids.ContainsKey(m.Right)));
    }

    [Fact]
    public void TokenDistillation_DraftOverWholeVocabulary_LoadsAndPredictsDistributions()
    {
        var dir = Path.Combine(stories.Root, "draft-small");
        var settings = new DistillationSettings(8, 48, 8, 0, new SamplingParams(1f, 0, 1f), 5);
        var manifest = ModelDirectory.ReadManifest(stories.Dir);
        var companions = manifest.Files.Where(f => f.Key != ModelManifest.ModelFileKey).ToDictionary(f => f.Key, f => ModelDirectory.FilePath(stories.Dir, manifest, f.Key));
        var (draftManifest, positions) = DraftDistiller.DistilTokens(stories.Model, [[1]], "stories", 3, dir, settings, companions);
        Assert.Equal(8 * 48, positions);
        Assert.Equal(512, draftManifest.VocabSize);
        Assert.Equal(TokenizerFactory.HuggingFace, draftManifest.Tokenizer);
        using var draft = ModelDirectory.Load(dir);
        Assert.Equal(512, ((NgramOnnxModel)draft).LiveTokens);
        Assert.Equal([2, 1], SpecialTokens.Read(dir).Eos);
        using var seq = draft.CreateSequence();
        var logits = new float[3 * 512];
        seq.Feed([1, 403, 407], logits);
        for (int r = 0; r < 3; r++)
        {
            double sum = 0;
            for (int x = 0; x < 512; x++) sum += Math.Exp(logits[r * 512 + x]);
            Assert.Equal(1.0, sum, 3);
        }

        // Held out, the distilled draft agrees with the target far above chance (1/512).
        var alpha = DraftDistiller.Agreement(stories.Model, draft, [[1]], 512, settings with { Sequences = 4 });
        Assert.InRange(alpha, 0.2, 1.0);
    }
}

public sealed class Llama2cInputTests
{
    [Fact]
    public void Checkpoint_Truncated_OneLineNamingFile()
    {
        var bytes = StoriesModels.CheckpointBytes();
        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Parse(bytes.AsSpan(0, bytes.Length - 100), "cut.bin"));
        Assert.Contains("'cut.bin' is truncated", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Checkpoint_WrongHeader_OneLineNamingFile()
    {
        var bytes = StoriesModels.CheckpointBytes();
        BitConverter.TryWriteBytes(bytes.AsSpan(12, 4), 3); // 3 query heads do not divide dim 64
        var e = Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Parse(bytes, "bad.bin"));
        Assert.Contains("'bad.bin' has a llama2.c header that describes no valid model", e.Message);
        var extra = StoriesModels.CheckpointBytes().Concat(new byte[8]).ToArray();
        Assert.Contains("bytes after the weights", Assert.Throws<InvalidDataException>(() => Llama2cCheckpoint.Parse(extra, "long.bin")).Message);
    }

    [Fact]
    public void Tokenizer_OfAnotherModel_RefusedNamingFile()
    {
        var checkpoint = Llama2cCheckpoint.Parse(StoriesModels.CheckpointBytes(), "stories260K.bin");
        var bytes = StoriesModels.TokenizerBytes();
        // Keep the first 300 tokens: a valid tokenizer file, but not this model's.
        int at = 4;
        for (int i = 0; i < 300; i++) at += 8 + BitConverter.ToInt32(bytes, at + 4);
        var other = SentencePieceBin.Parse(bytes.AsSpan(0, at), "other.bin");
        Assert.Equal(300, other.Count);
        var dir = Directory.CreateTempSubdirectory("iotdsd-import-").FullName;
        try
        {
            var e = Assert.Throws<ModelLoadException>(() => Llama2cImporter.Import(checkpoint, other, "other.bin", dir, "x"));
            Assert.Equal("other.bin", e.Path);
            Assert.Contains("holds 300 tokens but the checkpoint's vocabulary has 512", e.Message);
            Assert.Contains("is truncated in token 300", Assert.Throws<TokenizerFormatException>(() => SentencePieceBin.Parse(bytes.AsSpan(0, at + 5), "cut.bin")).Message);

            // From files, as `iotdsd models import` reads them: one line naming the tokenizer file.
            var checkpointFile = Path.Combine(dir, "stories260K.bin");
            File.WriteAllBytes(checkpointFile, StoriesModels.CheckpointBytes());
            var cut = Path.Combine(dir, "cut.bin");
            File.WriteAllBytes(cut, bytes.AsSpan(0, at + 5).ToArray());
            var fromFile = Assert.Throws<ModelLoadException>(() => Llama2cImporter.Import(checkpointFile, cut, Path.Combine(dir, "out")));
            Assert.Equal(cut, fromFile.Path);
            Assert.Contains($"'{cut}' (llama2.c tokenizer): is truncated in token 300", fromFile.Message);
            Assert.DoesNotContain('\n', fromFile.Message);
            var otherFile = Path.Combine(dir, "other.bin");
            File.WriteAllBytes(otherFile, bytes.AsSpan(0, at).ToArray());
            var wrong = Assert.Throws<ModelLoadException>(() => Llama2cImporter.Import(checkpointFile, otherFile, Path.Combine(dir, "out")));
            Assert.Contains($"'{otherFile}' holds 300 tokens but the checkpoint's vocabulary has 512", wrong.Message);
            Assert.False(Directory.Exists(Path.Combine(dir, "out")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using IotDsd.Inference.Tokenizers;
using Xunit.Abstractions;

namespace IotDsd.Inference.Tests;

/// <summary>
/// Real tokenizers against Hugging Face's own implementation: ids, ids with the post-processor's special tokens and
/// decoded text must equal what <c>Golden/make-golden.mjs</c> recorded from @huggingface/tokenizers.
/// </summary>
public sealed class TokenizerGoldenTests(ITestOutputHelper output)
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Golden");

    public static readonly TheoryData<string> Shipped = new() { "gpt2", "mistral", "qwen3", "stories260K" };

    private sealed record Case(string Text, int[] Ids, string[] Tokens, int[] IdsWithSpecial, string Decoded);

    private static List<Case> Cases(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, name, "golden.json")));
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!,
            [.. c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32())],
            [.. c.GetProperty("tokens").EnumerateArray().Select(i => i.GetString()!)],
            [.. c.GetProperty("ids_with_special_tokens").EnumerateArray().Select(i => i.GetInt32())],
            c.GetProperty("decoded").GetString()!))];
    }

    /// <summary>The tokenizer.json of <paramref name="name"/> (Brotli-compressed in the repository), or null when absent.</summary>
    internal static HfBpeTokenizer? Load(string name)
    {
        var dir = Path.Combine(Root, name);
        byte[] json;
        string source;
        if (File.Exists(Path.Combine(dir, "tokenizer.json")))
        {
            source = Path.Combine(dir, "tokenizer.json");
            json = File.ReadAllBytes(source);
        }
        else if (File.Exists(Path.Combine(dir, "tokenizer.json.br")))
        {
            source = Path.Combine(dir, "tokenizer.json.br");
            json = Brotli(source);
        }
        else if (name == "llama3" && Environment.GetEnvironmentVariable("IOTDSD_LLAMA3_TOKENIZER") is { Length: > 0 } external && File.Exists(external))
        {
            source = external;
            json = File.ReadAllBytes(external);
        }
        else
        {
            return null;
        }
        var config = File.ReadAllBytes(Path.Combine(dir, "tokenizer_config.json"));
        return HfBpeTokenizer.Parse(json, source, config);
    }

    private void Check(string name, HfBpeTokenizer tok)
    {
        var cases = Cases(name);
        var failures = new List<string>();
        int ids = 0, special = 0, decoded = 0, streamed = 0;
        foreach (var c in cases)
        {
            var got = tok.Encode(c.Text);
            if (got.SequenceEqual(c.Ids)) ids++;
            else failures.Add($"encode {Show(c.Text)}: expected [{string.Join(",", c.Ids)}] ({string.Join("|", c.Tokens)}), got [{string.Join(",", got)}] ({string.Join("|", got.Select(i => tok.IdToToken(i)))})");
            var withSpecial = tok.Encode(c.Text, addSpecialTokens: true);
            if (withSpecial.SequenceEqual(c.IdsWithSpecial)) special++;
            else failures.Add($"encode with special tokens {Show(c.Text)}: expected [{string.Join(",", c.IdsWithSpecial)}], got [{string.Join(",", withSpecial)}]");
            var text = tok.Decode(c.Ids);
            if (text == c.Decoded) decoded++;
            else failures.Add($"decode {Show(c.Text)}: expected {Show(c.Decoded)}, got {Show(text)}");

            // Streaming from the start gives the same text, in pieces that are whole characters.
            var stream = tok.CreateStreamDecoder(atStart: true, skipSpecialTokens: false);
            var pieces = c.Ids.Select(stream.Append).Append(stream.Flush()).ToList();
            bool whole = pieces.All(p => p.Length == 0 || !(char.IsHighSurrogate(p[^1]) || char.IsLowSurrogate(p[0])));
            if (string.Concat(pieces) == c.Decoded && whole) streamed++;
            else failures.Add($"stream {Show(c.Text)}: got {string.Join(" + ", pieces.Select(Show))}");
        }
        output.WriteLine($"{name}: {cases.Count} strings; ids {ids}/{cases.Count}, with special tokens {special}/{cases.Count}, decode {decoded}/{cases.Count}, stream {streamed}/{cases.Count}");
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} mismatches with Hugging Face:\n" + string.Join("\n", failures));
    }

    private static string Show(string s) => JsonSerializer.Serialize(s);

    [Theory]
    [MemberData(nameof(Shipped))]
    public void Tokenizer_MatchesHuggingFace(string name)
    {
        var tok = Load(name);
        Assert.NotNull(tok); // shipped in the repository: never skipped
        Check(name, tok);
    }

    [SkippableFact]
    public void Llama3_MatchesHuggingFace()
    {
        var tok = Load("llama3");
        Skip.If(tok is null, "Llama 3's tokenizer.json is not in the repository: set IOTDSD_LLAMA3_TOKENIZER to it (see Golden/README.md)");
        Check("llama3", tok!);
    }

    private static byte[] Brotli(string path)
    {
        using var input = new BrotliStream(File.OpenRead(path), CompressionMode.Decompress);
        using var buffer = new MemoryStream();
        input.CopyTo(buffer);
        return buffer.ToArray();
    }

    /// <summary>2,000 more strings (fortunes records and seeded random mixes): ids and decoded text.</summary>
    private void Sweep(string name, HfBpeTokenizer tok)
    {
        var strings = JsonSerializer.Deserialize<string[]>(Brotli(Path.Combine(Root, "sweep-strings.json.br")))!;
        using var doc = JsonDocument.Parse(Brotli(Path.Combine(Root, name, "sweep.json.br")));
        var expected = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(strings.Length, expected.Count);
        var failures = new List<string>();
        int ids = 0, decoded = 0, tokens = 0;
        for (int i = 0; i < strings.Length; i++)
        {
            int[] want = [.. expected[i].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
            var wantText = expected[i].TryGetProperty("decoded", out var d) ? d.GetString()! : strings[i];
            var got = tok.Encode(strings[i]);
            tokens += want.Length;
            if (got.SequenceEqual(want)) ids++;
            else failures.Add($"encode {Show(strings[i])}: expected [{string.Join(",", want)}], got [{string.Join(",", got)}]");
            var text = tok.Decode(want);
            if (text == wantText) decoded++;
            else failures.Add($"decode {Show(strings[i])}: expected {Show(wantText)}, got {Show(text)}");
        }
        output.WriteLine($"{name} sweep: {strings.Length} strings, {tokens} tokens; ids {ids}/{strings.Length}, decode {decoded}/{strings.Length}");
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} mismatches with Hugging Face:\n" + string.Join("\n", failures.Take(20)));
    }

    [Theory]
    [MemberData(nameof(Shipped))]
    public void Tokenizer_Sweep_MatchesHuggingFace(string name) => Sweep(name, Load(name)!);

    [SkippableFact]
    public void Llama3_Sweep_MatchesHuggingFace()
    {
        var tok = Load("llama3");
        Skip.If(tok is null, "Llama 3's tokenizer.json is not in the repository: set IOTDSD_LLAMA3_TOKENIZER to it (see Golden/README.md)");
        Sweep("llama3", tok!);
    }

    [Fact]
    public void SentencePieceBin_WritesWhatHuggingFacesConverterWrites()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-spm-").FullName;
        try
        {
            var path = Path.Combine(dir, "tokenizer.json");
            SentencePieceBin.WriteTokenizerJson(Path.Combine(Root, "stories260K", "tok512.bin"), path, vocabSize: 512);
            var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "stories260K", "tokenizer.json")));
            var actual = JsonNode.Parse(File.ReadAllText(path));
            Assert.True(JsonNode.DeepEquals(expected!["model"]!["vocab"], actual!["model"]!["vocab"]), "the vocabularies differ");
            Assert.Equal(expected["model"]!["merges"]!.ToJsonString(), actual["model"]!["merges"]!.ToJsonString());
            Assert.True(JsonNode.DeepEquals(expected, actual), "the converted tokenizer.json differs from the reference outside vocab and merges");

            var entries = SentencePieceBin.Read(Path.Combine(Root, "stories260K", "tok512.bin"));
            SentencePieceBin.WriteTokenizerConfig(entries, Path.Combine(dir, "tokenizer_config.json"));
            var tok = HfBpeTokenizer.Load(path);
            Assert.Equal(512, tok.VocabSize);
            Assert.Equal(1, tok.BosTokenId);
            Assert.Equal(2, tok.EosTokenId);
            Assert.Equal([1, 403, 407, 261, 378], tok.Encode("Once upon a time", addSpecialTokens: true));
            Assert.Equal([403, 407, 261, 378], tok.Encode("Once upon a time"));
            Assert.Equal("Once upon a time", tok.Decode([1, 403, 407, 261, 378], skipSpecialTokens: true));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("stories260K", "日本語 😀 café ü")] // 512 tokens: all of these go through <0xHH> byte fallback
    [InlineData("mistral", "rare ꙮ𝔘🪐🦙 ᚠᛇ")]
    [InlineData("gpt2", "😀🎉👍🏽 日本語")] // byte-level tokens that end inside a character
    [InlineData("qwen3", "rare ꙮ𝔘🪐🦙 ᚠᛇ")]
    public void StreamDecoder_ContinuingText_ReleasesOnlyWholeCharacters(string name, string text)
    {
        var tok = Load(name)!;
        var ids = tok.Encode(text);
        var stream = tok.CreateStreamDecoder();
        var pieces = ids.Select(stream.Append).ToList();
        pieces.Add(stream.Flush());
        int splitCharacters = 0;
        foreach (var id in ids)
        {
            var bytes = tok.TokenBytes(id).ToArray();
            try
            {
                _ = new UTF8Encoding(false, true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                splitCharacters++;
            }
        }
        Assert.True(splitCharacters > 0, "the test text should hold tokens that are not whole characters");
        foreach (var p in pieces)
        {
            Assert.DoesNotContain('\uFFFD', p);
            Assert.Equal(p, Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(p)));
        }
        // A continuation keeps the space a SentencePiece token carries.
        var expected = name is "stories260K" or "mistral" ? " " + text : text;
        Assert.Equal(expected, string.Concat(pieces));
    }

    [Fact]
    public void StreamDecoder_SkipsSpecialTokens()
    {
        var tok = Load("mistral")!;
        var stream = tok.CreateStreamDecoder();
        var ids = new[] { 1 }.Concat(tok.Encode("Hello")).Append(2).ToArray();
        Assert.Equal(" Hello", string.Concat(ids.Select(stream.Append)) + stream.Flush());
        Assert.Equal("<s> Hello</s>", tok.Decode(ids));
    }
}

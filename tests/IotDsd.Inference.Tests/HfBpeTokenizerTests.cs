using System.Text;
using System.Text.Json;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests;

public sealed class HfBpeTokenizerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "iotdsd-tok-" + Guid.NewGuid().ToString("N"));

    public HfBpeTokenizerTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static string C(byte b) => HfBpeTokenizer.ByteLevelChar(b).ToString();

    /// <summary>A GPT-2-style tokenizer.json: 256 byte tokens plus merges for " the" and "é".</summary>
    private string WriteWithMerges()
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[C((byte)b)] = b;
        string sp = C((byte)' ');
        vocab[sp + "t"] = 256;
        vocab["he"] = 257;
        vocab[sp + "the"] = 258;
        vocab[C(0xC3) + C(0xA9)] = 259; // é
        var json = new
        {
            version = "1.0",
            added_tokens = new[] { new { id = 260, content = "<|endoftext|>", special = true } },
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            decoder = new { type = "ByteLevel" },
            model = new { type = "BPE", vocab, merges = new[] { sp + " t", "h e", sp + "t he", C(0xC3) + " " + C(0xA9) } },
        };
        var path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json));
        return path;
    }

    [Fact]
    public void Encode_WithMerges_AppliesThemAndRoundTrips()
    {
        var tok = HfBpeTokenizer.Load(WriteWithMerges());
        Assert.Equal(261, tok.VocabSize);
        var ids = tok.Encode("Hi the café");
        Assert.Equal([(int)'H', 'i', 258, ' ', 'c', 'a', 'f', 259], ids);
        Assert.Equal("Hi the café", tok.Decode(ids));
        Assert.Equal("<|endoftext|>", tok.Decode([260]));
    }

    [Theory]
    [InlineData("plain ASCII text.")]
    [InlineData("Grüße, café — naïve 日本語 😀 and tabs\tand\nnewlines")]
    public void Encode_ByteVocabulary_MatchesByteTokenizerAndRoundTrips(string text)
    {
        var path = Path.Combine(_dir, "bytes.json");
        HfBpeTokenizer.WriteByteVocabulary(path);
        var tok = HfBpeTokenizer.Load(path);
        Assert.Equal(256, tok.VocabSize);
        var ids = tok.Encode(text);
        Assert.Equal(ByteTokenizer.Instance.Encode(text), ids);
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void StreamDecoder_MultiByteCharacters_NeverSplit()
    {
        var path = Path.Combine(_dir, "bytes.json");
        HfBpeTokenizer.WriteByteVocabulary(path);
        const string text = "aé日😀z";
        foreach (ITokenizer tok in (ITokenizer[])[HfBpeTokenizer.Load(path), HfBpeTokenizer.Load(WriteWithMerges()), ByteTokenizer.Instance])
        {
            var stream = tok.CreateStreamDecoder();
            var pieces = tok.Encode(text).Select(stream.Append).Where(p => p.Length > 0).ToList();
            pieces.Add(stream.Flush());
            Assert.Equal(text, string.Concat(pieces));
            foreach (var piece in pieces)
            {
                Assert.False(piece.Contains('\uFFFD'), $"a piece holds a replacement character: {piece}");
                Assert.Equal(piece, Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(piece))); // whole characters only
            }
            Assert.Contains("😀", pieces); // a 4-byte character comes out whole
        }
    }

    [Fact]
    public void StreamDecoder_TruncatedCharacterAtEnd_FlushGivesReplacement()
    {
        var stream = ByteTokenizer.Instance.CreateStreamDecoder();
        Assert.Equal("", stream.Append(0xE6));
        Assert.Equal("", stream.Append(0x97));
        Assert.Equal("\uFFFD", stream.Flush());
    }

    [Fact]
    public void Load_NotBpe_ClearError()
    {
        var path = Path.Combine(_dir, "wordpiece.json");
        File.WriteAllText(path, """{"model":{"type":"WordPiece","vocab":{}}}""");
        var e = Assert.Throws<TokenizerFormatException>(() => HfBpeTokenizer.Load(path));
        Assert.Contains("BPE", e.Message);
        Assert.StartsWith(path, e.Message);
    }
}

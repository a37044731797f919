using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests;

/// <summary>
/// The tokenizer.json components one at a time, on small vocabularies written here: the behaviours the golden
/// tokenizers do not reach (Split behaviours, Digits, Metaspace split, continuing_subword_prefix, ignore_merges,
/// lstrip/rstrip/single_word, Strip stop) and the one-line refusal of what this build does not implement.
/// </summary>
public sealed class TokenizerPipelineTests
{
    /// <summary>A tokenizer whose vocabulary is every character of <paramref name="chars"/> plus <paramref name="extra"/> tokens.</summary>
    private static HfBpeTokenizer Make(string chars, string[]? extra = null, object? merges = null, object? normalizer = null, object? preTokenizer = null,
        object? decoder = null, object[]? added = null, object? postProcessor = null, Dictionary<string, object?>? model = null, string? config = null)
    {
        var vocab = new Dictionary<string, int>();
        foreach (var c in chars.EnumerateRunes()) vocab.TryAdd(c.ToString(), vocab.Count);
        foreach (var e in extra ?? []) vocab.TryAdd(e, vocab.Count);
        var m = new Dictionary<string, object?> { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges ?? Array.Empty<string>() };
        foreach (var (k, v) in model ?? []) m[k] = v;
        var json = new Dictionary<string, object?>
        {
            ["version"] = "1.0", ["added_tokens"] = added ?? [], ["normalizer"] = normalizer, ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = postProcessor, ["decoder"] = decoder, ["model"] = m,
        };
        return HfBpeTokenizer.Parse(JsonSerializer.SerializeToUtf8Bytes(json), "test.json", config is null ? default : Encoding.UTF8.GetBytes(config));
    }

    private static string[] Pieces(HfBpeTokenizer tok, string text) => [.. tok.Encode(text).Select(i => tok.IdToToken(i)!)];

    private const string Letters = "abcdefghijklmnopqrstuvwxyz0123456789 ▁.,!?-";

    [Fact]
    public void Merges_StringAndArrayForms_AreTheSame()
    {
        var a = Make(Letters, ["ab", "abc"], merges: new[] { "a b", "ab c" });
        var b = Make(Letters, ["ab", "abc"], merges: new[] { new[] { "a", "b" }, new[] { "ab", "c" } });
        Assert.Equal(Pieces(a, "abcabab"), Pieces(b, "abcabab"));
        Assert.Equal(["abc", "ab", "ab"], Pieces(b, "abcabab"));
    }

    [Fact]
    public void Merges_LowestRankFirst_LeftmostAmongEqualRanks()
    {
        // "aaa": the rank-0 merge "a a" applies at the left first, leaving "aa a".
        var tok = Make("a", ["aa"], merges: new[] { "a a" });
        Assert.Equal(["aa", "a"], Pieces(tok, "aaa"));
        // bc ranks before ab: "abc" -> a + bc, never ab + c.
        var tok2 = Make("abc", ["ab", "bc"], merges: new[] { "b c", "a b" });
        Assert.Equal(["a", "bc"], Pieces(tok2, "abc"));
    }

    [Fact]
    public void IgnoreMerges_WordInVocabulary_IsOneToken()
    {
        // "abc" is in the vocabulary but no merge chain reaches it.
        var with = Make("abc", ["abc", "ab"], merges: new[] { "a b" }, model: new() { ["ignore_merges"] = true });
        var without = Make("abc", ["abc", "ab"], merges: new[] { "a b" });
        Assert.Equal(["abc"], Pieces(with, "abc"));
        Assert.Equal(["ab", "c"], Pieces(without, "abc"));
    }

    [Fact]
    public void ContinuingSubwordPrefix_AndEndOfWordSuffix()
    {
        // A merge with a continuing piece drops the right side's prefix: a + ##b = ab.
        var tok = Make("ab", ["##a", "##b", "ab"], merges: new[] { "a ##b" }, model: new() { ["continuing_subword_prefix"] = "##" },
            preTokenizer: new { type = "WhitespaceSplit" });
        Assert.Equal(["ab", "##a", "ab"], Pieces(tok, "aba ab"));
        var suffix = Make("ab", ["b</w>", "ab</w>"], merges: new[] { "a b</w>" }, model: new() { ["end_of_word_suffix"] = "</w>" });
        Assert.Equal(["ab</w>"], Pieces(suffix, "ab"));
    }

    [Fact]
    public void ByteFallback_UnknownCharacterBecomesItsBytes_ElseUnk()
    {
        var bytes = Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>").ToArray();
        var tok = Make("ab", ["<unk>", .. bytes], model: new() { ["byte_fallback"] = true, ["unk_token"] = "<unk>" });
        Assert.Equal(["a", "<0xC3>", "<0xA9>", "b"], Pieces(tok, "aéb"));
        Assert.Equal("a <0xC3> <0xA9> b", tok.Decode(tok.Encode("aéb"))); // no decoder: tokens joined with spaces, as Hugging Face does
        var unk = Make("ab", ["<unk>"], model: new() { ["unk_token"] = "<unk>", ["fuse_unk"] = true });
        Assert.Equal(["a", "<unk>", "b"], Pieces(unk, "aéèb"));
    }

    [Fact]
    public void Normalizers_SequencePrependReplaceLowercaseStripNfkc()
    {
        var tok = Make(Letters + "ﬁ", normalizer: new
        {
            type = "Sequence",
            normalizers = new object[]
            {
                new { type = "Strip", strip_left = true, strip_right = true },
                new { type = "NFKC" },
                new { type = "Lowercase" },
                new { type = "Prepend", prepend = "▁" },
                new { type = "Replace", pattern = new { String = " " }, content = "▁" },
            },
        });
        Assert.Equal(["▁", "a", "▁", "f", "i", "▁", "b"], Pieces(tok, "  A ﬁ B \t"));
        Assert.Empty(tok.Encode("   ")); // stripped to nothing: Prepend adds nothing to empty text
    }

    [Fact]
    public void Nfc_ComposesAndNfd_Decomposes()
    {
        var nfc = Make("eé", normalizer: new { type = "NFC" });
        Assert.Equal(["é"], Pieces(nfc, "e\u0301"));
        var nfd = Make("e\u0301", normalizer: new { type = "NFD" });
        Assert.Equal(["e", "\u0301"], Pieces(nfd, "é"));
        // Hangul composes algorithmically; canonical order puts the lower combining class first.
        var hangul = Make("한", normalizer: new { type = "NFC" });
        Assert.Equal(["한"], Pieces(hangul, "\u1112\u1161\u11AB"));
    }

    [Theory]
    [InlineData("Removed", new[] { "a", "b", "c" })]
    [InlineData("Isolated", new[] { "a", "-", "b", "-", "-", "c" })]
    [InlineData("MergedWithPrevious", new[] { "a-", "b-", "-", "c" })]
    [InlineData("MergedWithNext", new[] { "a", "-b", "-", "-c" })]
    [InlineData("Contiguous", new[] { "a", "-", "b", "--", "c" })]
    public void Split_Behaviours(string behavior, string[] expected)
    {
        var tok = Make("abc-", ["a-", "-b", "--", "-c", "b-"], merges: new[] { "a -", "- b", "- -", "- c", "b -" },
            preTokenizer: new { type = "Split", pattern = new { String = "-" }, behavior, invert = false });
        Assert.Equal(expected, Pieces(tok, "a-b--c"));
    }

    [Fact]
    public void Split_Regex_Inverted_KeepsMatchesOnly()
    {
        var tok = Make(Letters, ["ab", "12"], merges: new[] { "a b", "1 2" },
            preTokenizer: new { type = "Split", pattern = new { Regex = @"\p{L}+|\p{N}+" }, behavior = "Removed", invert = true });
        Assert.Equal(["ab", "12", "ab"], Pieces(tok, "ab 12,ab"));
    }

    [Fact]
    public void Digits_IndividualOrContiguous_AndWhitespace()
    {
        string[] extra = ["12", "123", "ab"];
        object[] merges = [new[] { "1", "2" }, new[] { "12", "3" }, new[] { "a", "b" }];
        var individual = Make(Letters, extra, merges, preTokenizer: new { type = "Sequence", pretokenizers = new object[] { new { type = "Whitespace" }, new { type = "Digits", individual_digits = true } } });
        Assert.Equal(["ab", "1", "2", "3", ",", "ab"], Pieces(individual, "ab123 , ab"));
        var contiguous = Make(Letters, extra, merges, preTokenizer: new { type = "Digits", individual_digits = false });
        Assert.Equal(["ab", "123"], Pieces(contiguous, "ab123"));
    }

    [Fact]
    public void Punctuation_EachMarkIsolated_BertSplitsOnWhitespaceToo()
    {
        string[] extra = ["ab", ",.", "«»"];
        object[] merges = [new[] { "a", "b" }, new[] { ",", "." }];
        var punctuation = Make(Letters + "«»", extra, merges, preTokenizer: new { type = "Punctuation" });
        Assert.Equal(["ab", ",", ".", "«", "ab"], Pieces(punctuation, "ab,.«ab"));
        var bert = Make(Letters, extra, merges, preTokenizer: new { type = "BertPreTokenizer" });
        Assert.Equal(["ab", ",", ".", "ab"], Pieces(bert, "ab ,.  ab"));
    }

    [Fact]
    public void Metaspace_PrependSchemes_AndSplit()
    {
        object Meta(string scheme, bool split) => new { type = "Metaspace", replacement = "▁", prepend_scheme = scheme, split };
        string[] extra = ["▁a", "a▁", "▁b"];
        object[] merges = [new[] { "a", "▁" }, new[] { "▁", "a" }, new[] { "▁", "b" }];
        object[] added = [new { id = 100, content = "<s>", special = true, normalized = false }];
        var first = Make(Letters, extra, merges, preTokenizer: Meta("first", split: false), added: added);
        Assert.Equal(["▁", "a▁", "b"], Pieces(first, "a b")); // "▁a▁b": rank 0 merges a▁ first
        Assert.Equal(["<s>", "a▁", "b"], Pieces(first, "<s>a b")); // not the first section: nothing prepended
        var split = Make(Letters, extra, merges, preTokenizer: Meta("always", split: true), added: added);
        Assert.Equal(["▁a", "▁b"], Pieces(split, "a b")); // split before each ▁, so a▁ cannot form
        Assert.Equal(["<s>", "▁a"], Pieces(split, "<s>a"));
        var never = Make(Letters, extra, merges, preTokenizer: Meta("never", split: true));
        Assert.Equal(["a", "▁b"], Pieces(never, "a b"));
    }

    [Fact]
    public void AddedTokens_LStripRStripSingleWord()
    {
        object[] added =
        [
            new { id = 100, content = "<mask>", special = true, normalized = false, lstrip = true, rstrip = true },
            new { id = 101, content = "cat", special = false, normalized = false, single_word = true },
        ];
        var tok = Make(Letters, added: added);
        Assert.Equal(["a", "<mask>", "b"], Pieces(tok, "a  <mask>  b"));
        Assert.Equal(["cat", " ", "a"], Pieces(tok, "cat a"));
        Assert.Equal(["c", "a", "t", "s"], Pieces(tok, "cats")); // single_word: not inside a word
        Assert.True(tok.IsSpecial(100));
        Assert.False(tok.IsSpecial(101));
    }

    [Fact]
    public void PostProcessor_TemplateGivesBos_ConfigOnlyWithoutTemplate()
    {
        object[] added = [new { id = 100, content = "<s>", special = true, normalized = false }, new { id = 101, content = "</s>", special = true, normalized = false }];
        var template = new
        {
            type = "TemplateProcessing",
            single = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { SpecialToken = new { id = "</s>", type_id = 0 } } },
            special_tokens = new Dictionary<string, object> { ["<s>"] = new { id = "<s>", ids = new[] { 100 }, tokens = new[] { "<s>" } }, ["</s>"] = new { id = "</s>", ids = new[] { 101 }, tokens = new[] { "</s>" } } },
        };
        var tok = Make("ab", added: added, postProcessor: template);
        Assert.Equal(100, tok.BosTokenId);
        Assert.Equal([100, 0, 1, 101], tok.Encode("ab", addSpecialTokens: true));
        Assert.Equal([0, 1], tok.Encode("ab"));

        var config = """{"add_bos_token": true, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}""";
        var fromConfig = Make("ab", added: added, postProcessor: new { type = "ByteLevel" }, config: config);
        Assert.Equal(100, fromConfig.BosTokenId);
        Assert.Equal(101, fromConfig.EosTokenId);
        Assert.Equal([100, 0], fromConfig.Encode("a", addSpecialTokens: true));
        Assert.Null(Make("ab", added: added).BosTokenId);
    }

    [Fact]
    public void Decoders_StripAfterFuse_StreamsTheSameAsWhole()
    {
        var decoder = new
        {
            type = "Sequence",
            decoders = new object[]
            {
                new { type = "Replace", pattern = new { String = "▁" }, content = " " },
                new { type = "ByteFallback" }, new { type = "Fuse" },
                new { type = "Strip", content = " ", start = 1, stop = 2 },
            },
        };
        var tok = Make(Letters, ["▁▁", "<0xC3>", "<0xA9>"], decoder: decoder);
        int[] ids = [.. Pieces(tok, "▁▁a▁").Select(p => tok.TokenToId(p)!.Value), tok.TokenToId("<0xC3>")!.Value, tok.TokenToId("<0xA9>")!.Value, tok.TokenToId("▁")!.Value, tok.TokenToId("▁")!.Value, tok.TokenToId("▁")!.Value];
        Assert.Equal(" a é ", tok.Decode(ids)); // one leading space and two trailing ones stripped
        var stream = tok.CreateStreamDecoder(atStart: true, skipSpecialTokens: false);
        var pieces = ids.Select(stream.Append).Append(stream.Flush()).ToList();
        Assert.Equal(" a é ", string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
    }

    [Fact]
    public void Decoder_Metaspace_DropsThePrependedSpaceOnlyAtTheStart()
    {
        var tok = Make(Letters, ["▁a", "▁b"], merges: new[] { "▁ a", "▁ b" }, preTokenizer: new { type = "Metaspace", replacement = "▁", prepend_scheme = "always", split = true },
            decoder: new { type = "Metaspace", replacement = "▁", prepend_scheme = "always", split = true });
        var ids = tok.Encode("a b");
        Assert.Equal("a b", tok.Decode(ids));
        var stream = tok.CreateStreamDecoder();
        Assert.Equal(" a b", string.Concat(ids.Select(stream.Append)) + stream.Flush());
    }

    [Theory]
    [InlineData(@"[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*", @"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*")]
    [InlineData(@"(?i:'s|'t)|a+?b|[+*?]+|x{2}|\++|\s+(?!\S)", @"(?i:'s|'t)|a+?b|[+*?]+|x{2}|\++|\s+(?!\S)")]
    [InlineData(@"[]+]++", @"[]+]+")]
    public void Regex_PossessiveQuantifiers_BecomeGreedy(string oniguruma, string dotnet)
    {
        Assert.Equal(dotnet, OnigRegex.Translate(oniguruma));
        var tok = Make(Letters + "'", preTokenizer: new { type = "Split", pattern = new { Regex = oniguruma }, behavior = "Isolated", invert = false });
        Assert.NotEmpty(tok.Encode("it's 123 ok"));
    }

    [Fact]
    public void Regex_CharactersBeyondTheBmp_ClassifiedAsOnigurumaDoes()
    {
        // 𝔘 (U+1D518) is a letter: with the stand-in, "a𝔘b" is one \p{L}+ piece, as Oniguruma finds it.
        var tok = Make("ab𝔘 ", ["a𝔘", "a𝔘b"], merges: new[] { "a 𝔘", "a𝔘 b" },
            preTokenizer: new { type = "Split", pattern = new { Regex = @"\p{L}+|\s+" }, behavior = "Isolated", invert = false });
        Assert.Equal(["a𝔘b", " ", "a𝔘b"], Pieces(tok, "a𝔘b a𝔘b"));
    }

    public static readonly TheoryData<string, string> Unknown = new()
    {
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"normalizer":{"type":"Precompiled","precompiled_charsmap":""}}""", "unknown normalizer type 'Precompiled'" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"UnicodeScripts"}]}}""", "unknown pre_tokenizer.pretokenizers[0] type 'UnicodeScripts'" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"decoder":{"type":"CTC"}}""", "unknown decoder type 'CTC'" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"post_processor":{"type":"Fancy"}}""", "unknown post_processor type 'Fancy'" },
        { """{"model":{"type":"Unigram","vocab":[["a",0.0]]}}""", "model type 'Unigram' is not supported" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}""", "model.merges[0]: 'b' is not in the vocabulary" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(?<"},"behavior":"Isolated"}}""", "pre_tokenizer.pattern.Regex does not compile" },
        { """{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"String":"-"},"behavior":"Sideways"}}""", "pre_tokenizer.behavior 'Sideways'" },
        { """{"model":{"type":"BPE","vocab":{"a":"zero"}}}""", "model.vocab[\"a\"] is not an id" },
        { """{"model":{"type":"BPE","vocab":{"a":0""", "is not valid JSON" },
        { """[1, 2]""", "is not a tokenizer.json" },
    };

    [Theory]
    [MemberData(nameof(Unknown))]
    public void Load_UnknownOrMalformedComponent_OneLineErrorNamingFileAndComponent(string json, string expected)
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-tok-").FullName;
        try
        {
            var path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(path, json);
            var e = Assert.Throws<TokenizerFormatException>(() => HfBpeTokenizer.Load(path));
            Assert.StartsWith(path + ": ", e.Message);
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Parse_InvalidUtf8InsideAString_FormatErrorNotACrash()
    {
        // Found by the tokenizer-json fuzz target: JSON strings are only transcoded when read.
        byte[] json = [.. "{\"model\":{\"type\":\"BPE\",\"vocab\":{\""u8, 0xC3, 0x28, .. "\":0}}}"u8];
        var e = Assert.Throws<TokenizerFormatException>(() => HfBpeTokenizer.Parse(json, "bad.json"));
        Assert.Equal("bad.json: is not valid UTF-8", e.Message);
    }

    [Fact]
    public void SentencePieceBin_TruncatedOrCorrupt_OneLineError()
    {
        var bin = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Golden", "stories260K", "tok512.bin"));
        var e = Assert.Throws<TokenizerFormatException>(() => SentencePieceBin.Parse(bin.AsSpan(0, bin.Length - 3), "tok512.bin"));
        Assert.Contains("truncated in token 511", e.Message);
        var e2 = Assert.Throws<TokenizerFormatException>(() => SentencePieceBin.Parse(bin, "tok512.bin", vocabSize: 600));
        Assert.Contains("holds 512 tokens, not the model's 600", e2.Message);
        var corrupt = (byte[])bin.Clone();
        corrupt[8] = 0xFF; // token 0's length
        Assert.Throws<TokenizerFormatException>(() => SentencePieceBin.Parse(corrupt, "tok512.bin"));
        Assert.Equal(512, SentencePieceBin.Parse(bin, "tok512.bin").Count);
    }

    [Fact]
    public void Converted_Stories260K_RoundTripsAsciiText()
    {
        var entries = SentencePieceBin.Read(Path.Combine(AppContext.BaseDirectory, "Golden", "stories260K", "tok512.bin"));
        using var buffer = new MemoryStream();
        SentencePieceBin.WriteTokenizerJson(entries, buffer);
        var tok = HfBpeTokenizer.Parse(buffer.ToArray(), "stories260K");
        Assert.NotNull(JsonNode.Parse(buffer.ToArray()));
        const string text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
        var ids = tok.Encode(text);
        Assert.True(ids.Length < text.Length / 2, $"{ids.Length} tokens for {text.Length} characters: merges are not applied");
        Assert.Equal(text, tok.Decode(ids));
    }
}

using System.Buffers.Binary;
using System.Text;
using IotDsd.Inference.Tokenizers;

namespace IotDsd.Fuzz;

/// <summary>Tokenizer files from outside: Hugging Face tokenizer.json and llama2.c tokenizer.bin.</summary>
public static class TokenizerTargets
{
    private static readonly string[] Texts = ["Once upon a time", "  héllo\tWörld 42 ", "<s>日本😀</s>", ""];

    /// <summary>
    /// tokenizer.json: parsed, and when it loads, some texts encoded and their ids decoded whole and streamed (which
    /// must agree). Only the documented <see cref="TokenizerFormatException"/> may escape.
    /// </summary>
    public static FuzzTarget TokenizerJson() => new("tokenizer-json", JsonSeeds(), input =>
    {
        var tok = HfBpeTokenizer.Parse(input, "tokenizer.json");
        var outcome = new StringBuilder("ok");
        foreach (var text in Texts)
        {
            var ids = tok.Encode(text, addSpecialTokens: true);
            if (ids.Any(id => id < 0 || id >= tok.VocabSize))
            {
                throw new InvalidOperationException($"id outside the vocabulary of {tok.VocabSize}");
            }

            var whole = tok.Decode(ids);
            var stream = tok.CreateStreamDecoder(atStart: true, skipSpecialTokens: false);
            var streamed = string.Concat(ids.Select(stream.Append)) + stream.Flush();
            if (streamed != whole)
            {
                throw new InvalidOperationException("streamed decoding differs from whole decoding");
            }

            outcome.Append(':').Append(Math.Min(ids.Length, 9));
        }

        return outcome.Append(tok.BosTokenId is null ? ":nobos" : ":bos").ToString();
    }, ex => ex is TokenizerFormatException);

    /// <summary>llama2.c tokenizer.bin: parsed, and when it parses, converted to tokenizer.json and loaded.</summary>
    public static FuzzTarget SentencePieceBin() => new("tokenizer-bin", [BinSeed()], input =>
    {
        var entries = Inference.Tokenizers.SentencePieceBin.Parse(input, "tokenizer.bin");
        using var json = new MemoryStream();
        Inference.Tokenizers.SentencePieceBin.WriteTokenizerJson(entries, json);
        var tok = HfBpeTokenizer.Parse(json.ToArray(), "converted");
        return $"ok:{Math.Min(entries.Count, 9)}:{Math.Min(tok.Encode(Texts[0]).Length, 9)}";
    }, ex => ex is TokenizerFormatException);

    private static byte[] BinSeed()
    {
        string[] pieces = ["<unk>", "\n<s>\n", "\n</s>\n", "<0x41>", "<0xC3>", "<0xA9>", " ", "a", "b", " a", "ab", " ab", "O", "n", "ce", " t"];
        using var buffer = new MemoryStream();
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(header, 8);
        buffer.Write(header[..4]);
        for (var i = 0; i < pieces.Length; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(pieces[i]);
            BinaryPrimitives.WriteSingleLittleEndian(header, i < 6 ? 0f : -i);
            BinaryPrimitives.WriteInt32LittleEndian(header[4..], bytes.Length);
            buffer.Write(header);
            buffer.Write(bytes);
        }

        return buffer.ToArray();
    }

    private static List<byte[]> JsonSeeds() =>
    [
        // SentencePiece style: Prepend/Replace normalizer, byte fallback, decoder sequence, BOS template.
        Encoding.UTF8.GetBytes("""
        {"added_tokens":[{"id":0,"content":"<unk>","special":true,"normalized":false},{"id":1,"content":"<s>","special":true,"normalized":false},{"id":2,"content":"</s>","special":true,"normalized":false,"lstrip":true}],
         "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
         "pre_tokenizer":null,
         "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
         "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
         "model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0xC3>":3,"<0xA9>":4,"▁":5,"O":6,"n":7,"c":8,"e":9,"▁O":10,"nc":11,"▁Onc":12},
                  "merges":["▁ O","n c",["▁O","nc"]]}}
        """),
        // Byte level: Split regex then ByteLevel, NFC, ignore_merges, array merges.
        Encoding.UTF8.GetBytes("""
        {"added_tokens":[{"id":9,"content":"<|end|>","special":true,"normalized":false,"rstrip":true}],
         "normalizer":{"type":"NFC"},
         "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
         "post_processor":{"type":"ByteLevel"},
         "decoder":{"type":"ByteLevel"},
         "model":{"type":"BPE","ignore_merges":true,"vocab":{"O":0,"n":1,"c":2,"e":3,"Ġ":4,"On":5,"ce":6,"Once":7,"Ġt":8},"merges":[["O","n"],["c","e"],["On","ce"]]}}
        """),
        // Metaspace with split, Digits, Strip and Lowercase normalizers, Metaspace decoder.
        Encoding.UTF8.GetBytes("""
        {"added_tokens":[],
         "normalizer":{"type":"Sequence","normalizers":[{"type":"Strip","strip_left":true,"strip_right":true},{"type":"Lowercase"},{"type":"NFKC"}]},
         "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithNext"}]},
         "decoder":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always"},
         "model":{"type":"BPE","continuing_subword_prefix":"##","vocab":{"▁":0,"o":1,"##n":2,"on":3,"4":4,"2":5},"merges":["o ##n"]}}
        """),
        // BERT-style components around a BPE model, and a tokenizer_config-free RoBERTa template.
        Encoding.UTF8.GetBytes("""
        {"added_tokens":[{"id":5,"content":"<cls>","special":true},{"id":6,"content":"<sep>","special":true,"single_word":true}],
         "normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":true,"lowercase":true},
         "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"BertPreTokenizer"},{"type":"Punctuation","behavior":"Contiguous"},{"type":"Whitespace"},{"type":"WhitespaceSplit"}]},
         "post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"RobertaProcessing","cls":["<cls>",5],"sep":["<sep>",6]}]},
         "decoder":{"type":"Sequence","decoders":[{"type":"Strip","content":"x","start":1,"stop":1},{"type":"Fuse"}]},
         "model":{"type":"BPE","end_of_word_suffix":"</w>","dropout":null,"vocab":{"o":0,"n":1,"n</w>":2,"on</w>":3,"x":4},"merges":["o n</w>"]}}
        """),
    ];
}

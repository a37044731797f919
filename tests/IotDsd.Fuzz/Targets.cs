using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Inference.Models;
using IotDsd.Inference.Onnx;
using IotDsd.Inference.Tokenizers;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Presence;
using IotDsd.Verifier.Hosting;
using IotDsd.Verifier.Limits;

namespace IotDsd.Fuzz;

/// <summary>Every decoder that takes input from outside the process, as a fuzz target with seeds.</summary>
public static class Targets
{
    private static readonly ToyModel Model = new();

    /// <summary>
    /// Wire messages: <see cref="WireCodec.Decode(ReadOnlyMemory{byte}, int)"/> never throws. A decoded request is then
    /// checked against a live verifier session of every mode and, when the check passes, verified; a decoded verdict
    /// is applied to a draft session with a round outstanding. Only the documented protocol-violation exception may escape.
    /// </summary>
    public static FuzzTarget Wire() => new("wire", WireSeeds(), input =>
    {
        var decoded = WireCodec.Decode(input);
        if (!decoded.Ok)
        {
            return $"error:{decoded.Error}:{decoded.Reason?[..Math.Min(decoded.Reason.Length, 24)]}";
        }

        switch (decoded.Message)
        {
            case DraftRound round:
                var outcome = new StringBuilder("round");
                foreach (var mode in Enum.GetValues<DecodingMode>())
                {
                    using var session = new VerifierSession(Model, Open(mode), "fuzz");
                    var check = session.Check(round);
                    outcome.Append(':').Append(check.Kind).Append(check.Code);
                    if (check.Kind == RoundCheckKind.Ok && round.Stream > 0)
                    {
                        // A streamed round: decode a few of its tokens, then the same request again resumes it.
                        var stream = session.StartStream(round);
                        for (var i = 0; i < Math.Min(stream.Total, 4); i++)
                        {
                            Model.FeedBatch([session.BeginStreamStep()]);
                            session.CompleteStreamStep();
                        }

                        outcome.Append("stream").Append(session.Check(round).Kind);
                    }
                    else if (check.Kind == RoundCheckKind.Ok)
                    {
                        var feed = session.BeginFeed(round);
                        Model.FeedBatch([feed]);
                        var verdict = session.Complete(round, feed.Logits.Span, 1, 0, 0);
                        outcome.Append(verdict.Kind);
                    }
                }

                return outcome.ToString();
            case MoreProposals more:
                using (var session = new VerifierSession(Model, Open(DecodingMode.Rsr), "fuzz"))
                {
                    return $"more:{session.MoreProposals(more).Code}";
                }

            case Verdict verdict:
                var settings = new SessionSettings { SessionId = "fuzz", Mode = DecodingMode.Rsr, Sampling = new SamplingParams(0.8f, 0, 1f), Seed = 3, MaxTokens = 64, Gamma = 4 };
                using (var draft = new DraftSession(Model, settings, [1, 2, 3]))
                {
                    draft.PrepareRound(4, 8);
                    return $"verdict:{draft.Apply(verdict with { SessionId = "fuzz", Epoch = draft.Epoch }).Kind}";
                }

            case TokenChunk chunk:
                var streamed = new SessionSettings { SessionId = "fuzz", Mode = DecodingMode.Greedy, Sampling = SamplingParams.Greedy, MaxTokens = 64, Gamma = 4 };
                using (var draft = new DraftSession(Model, streamed, [1, 2, 3]))
                {
                    var request = draft.PrepareStream(16, 0);
                    var step = draft.ApplyChunk(chunk with { SessionId = "fuzz", Epoch = draft.Epoch, Round = request.Round });
                    return $"chunk:{step.Kind}:{step.Count}:{(draft.IsStreaming ? draft.ResumeStream().Stream : -1)}";
                }

            default:
                return decoded.Message!.GetType().Name;
        }
    }, ex => ex is ProtocolViolationException);

    /// <summary>
    /// Retained presence payloads and the topics they arrive on, placed next to a well-formed loaded verifier: whatever
    /// load a status claims, a new session goes to a verifier that is online, and to one that is not excluded.
    /// </summary>
    public static FuzzTarget Presence() => new("presence", PresenceSeeds(), input =>
    {
        var split = input.AsSpan().IndexOf((byte)0);
        var topic = split < 0 ? TopicScheme.VerifierStatus("v1") : Encoding.UTF8.GetString(input.AsSpan(0, split));
        var payload = split < 0 ? input : input[(split + 1)..];
        var directory = new VerifierDirectory();
        directory.Update(TopicScheme.VerifierStatus("v-known"), new PresencePayload { Role = "verifier", Id = "v-known", Load = VerifierLoad.Of(3, 1, 2, 0.5, 1, 100) }.ToJson());
        var known = directory.Update(topic, payload);
        var parsed = PresencePayload.TryParse(payload);
        var pick = directory.Pick("session");
        var other = directory.Pick("session", new HashSet<string> { "v-known" });
        if (pick is null || !directory.IsOnline(pick) || other == "v-known" || (other is not null && !directory.IsOnline(other)))
        {
            throw new InvalidOperationException($"placed on {pick} / {other}, online {string.Join(",", directory.Online)}");
        }

        return $"{known}:{parsed?.State}:{parsed?.Load?.Rank > 0}:{directory.Online.Count}";
    }, _ => false);

    /// <summary>Configuration: broker addresses, identifiers and topics, and every options record's validation.</summary>
    public static FuzzTarget Configuration() => new("configuration", ConfigSeeds(), input =>
    {
        var text = Encoding.UTF8.GetString(input);
        var address = BrokerAddress.TryParse(text, out var error);
        var id = TopicScheme.IsValidId(text);
        _ = TopicScheme.DeviceFromRoundsTopic(text, "v1");
        _ = TopicScheme.VerifierFromStatusTopic(text);
        _ = MqttSecurity.IsLoopback(text);
        var padded = new byte[32];
        input.AsSpan(0, Math.Min(32, input.Length)).CopyTo(padded);
        int I(int at) => BinaryPrimitives.ReadInt32LittleEndian(padded.AsSpan(at));
        float F(int at) => BinaryPrimitives.ReadSingleLittleEndian(padded.AsSpan(at));
        var limits = new VerifierLimits
        {
            MaxGamma = I(0), MaxPromptTokens = I(4), MaxSessionTokens = I(8), MaxSessionsPerDevice = I(12),
            RequestsPerSecond = F(16), RequestBurst = I(20), MaxDeviceMemoryBytes = I(24), BytesPerCachedToken = I(28),
        };
        var verifier = new VerifierOptions
        {
            Broker = address ?? new BrokerAddress("127.0.0.1", 1883), VerifierId = text, MaxBatch = I(0), MaxSessions = I(4),
            BatchWait = TimeSpan.FromTicks(I(8)), Limits = limits,
        };
        var session = new SessionSettings
        {
            SessionId = text, Sampling = new SamplingParams(F(0), I(4), F(8)), MaxTokens = I(12), Gamma = I(16), Mode = (DecodingMode)(padded[20] % 5),
        };
        var bad = (verifier.Validate() is null ? 1 : 0) + (session.Validate() is null ? 2 : 0) + (limits.Validate() is null ? 4 : 0);
        return $"{address is not null}:{error?[..Math.Min(error.Length, 20)]}:{id}:{bad}";
    }, _ => false);

    /// <summary>Tokenizer input: token ids from the wire decoded to text, in one piece and streamed.</summary>
    public static FuzzTarget Tokenizer() => new("tokenizer", [Encoding.UTF8.GetBytes("héllo wörld ✓ 😀"), [0xF0, 0x9F, 0x98], [0xFF, 0xFE, 0, 1]], input =>
    {
        var tokens = new int[input.Length];
        for (var i = 0; i < input.Length; i++)
        {
            tokens[i] = input[i];
        }

        var text = ByteTokenizer.Instance.Decode(tokens);
        var stream = ByteTokenizer.Instance.CreateStreamDecoder();
        var streamed = new StringBuilder();
        foreach (var t in tokens)
        {
            streamed.Append(stream.Append(t));
        }

        streamed.Append(stream.Flush());
        if (streamed.ToString() != text)
        {
            throw new InvalidOperationException("streamed decoding differs from whole decoding");
        }

        // Ids out of range must be refused with the documented exception, never wrapped around.
        var wide = MemoryMarshal.Cast<byte, int>(input.AsSpan(0, input.Length / 4 * 4)).ToArray();
        try
        {
            _ = ByteTokenizer.Instance.Decode(wide);
            return "ok:" + wide.All(t => (uint)t < 256);
        }
        catch (ArgumentOutOfRangeException) when (wide.Any(t => (uint)t >= 256))
        {
            return "refused";
        }
    }, _ => false);

    /// <summary>llama2.c checkpoints: parsed, or refused with a one-line <see cref="InvalidDataException"/> naming the file.</summary>
    public static FuzzTarget Llama2cCheckpoint() => new("llama2c-checkpoint", [TinyCheckpoint(shared: true), TinyCheckpoint(shared: false), TinyCheckpoint(true)[..40]], input =>
    {
        var checkpoint = Inference.Llama.Llama2cCheckpoint.Parse(input, "fuzz.bin");
        return $"ok:{checkpoint.Shape.Layers}:{checkpoint.Shape.SharedClassifier}";
    }, e => e is InvalidDataException && e.Message.Contains("fuzz.bin", StringComparison.Ordinal) && !e.Message.Contains('\n', StringComparison.Ordinal));

    /// <summary>generation_config.json (and so config.json, tokenizer_config.json): BOS and EOS read, or refused naming the file.</summary>
    public static FuzzTarget SpecialTokenFiles(string dir) => new("special-tokens",
        [Encoding.UTF8.GetBytes("{\"bos_token_id\": 1, \"eos_token_id\": [2, 1]}"), Encoding.UTF8.GetBytes("{\"eos_token_id\": 7}"), Encoding.UTF8.GetBytes("[]")], input =>
    {
        File.WriteAllBytes(Path.Combine(dir, "generation_config.json"), input);
        var specials = SpecialTokens.Read(dir);
        return $"ok:{specials.Bos}:{specials.Eos.Count}:{specials.AddBos}";
    }, e => e is ModelLoadException m && m.Message.Contains("generation_config.json", StringComparison.Ordinal));

    /// <summary>A valid checkpoint of the smallest shape: dim 4, hidden 4, 1 layer, 2 heads sharing 1, 3 tokens, context 2.</summary>
    private static byte[] TinyCheckpoint(bool shared)
    {
        int[] header = [4, 4, 1, 2, 1, shared ? 3 : -3, 2];
        const int dim = 4, hidden = 4, layers = 1, kvDim = 2, vocab = 3, seq = 2, headDim = 2;
        var floats = (vocab * dim) + (layers * ((2 * dim) + (2 * dim * dim) + (2 * kvDim * dim) + (3 * hidden * dim))) + dim + (seq * headDim) + (shared ? 0 : vocab * dim);
        var bytes = new byte[(header.Length + floats) * 4];
        for (var i = 0; i < header.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), header[i]);
        }

        for (var i = 0; i < floats; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((header.Length + i) * 4), (i % 7) * 0.1f);
        }

        return bytes;
    }

    /// <summary>Model manifests as files: read, checked, their tokenizer chosen and their files resolved and hashed.</summary>
    public static FuzzTarget Manifest(string dir) => new("manifest", ManifestSeeds(), input =>
    {
        File.WriteAllBytes(Path.Combine(dir, ModelManifest.FileName), input);
        var manifest = ModelDirectory.ReadManifest(dir);
        _ = TokenizerFactory.ForManifest(manifest, dir);
        _ = ModelDirectory.Validate(dir);
        return "valid";
    }, ex => ex is ModelLoadException);

    /// <summary>Device session journals as files: read record by record, then loaded as a restarted device would.</summary>
    public static FuzzTarget Journal(string dir) => new("journal", JournalSeeds(), input =>
    {
        var path = Path.Combine(dir, "fuzz" + Edge.Resilience.SessionStore.JournalSuffix);
        File.WriteAllBytes(path, input);
        var contents = Edge.Resilience.SessionStore.Read(path);
        using var store = new Edge.Resilience.SessionStore(dir);
        var loaded = contents.Fingerprint is { } fp ? store.Load("fuzz", fp) : null;
        return $"records:{Math.Min(contents.Records, 4)} torn:{contents.IgnoredBytes > 0} state:{loaded is not null}";
    }, ex => ex is InvalidDataException);

    /// <summary>
    /// An export's configuration files: the input as Hugging Face's config.json beside model.onnx, then as
    /// onnxruntime-genai's genai_config.json (no config.json), each described into a manifest; and as a tokenizer.json
    /// whose vocabulary is sized and digested.
    /// </summary>
    public static FuzzTarget ModelConfig(string dir) => new("model-config", ModelConfigSeeds(), input =>
    {
        var hf = Directory.CreateDirectory(Path.Combine(dir, "hf")).FullName;
        var genai = Directory.CreateDirectory(Path.Combine(dir, "genai")).FullName;
        foreach (var d in (string[])[hf, genai])
        {
            if (!File.Exists(Path.Combine(d, OptimumDirectory.TokenizerFile))) File.WriteAllText(Path.Combine(d, OptimumDirectory.TokenizerFile), "{}");
            if (!File.Exists(Path.Combine(d, OptimumDirectory.ModelFile))) File.WriteAllBytes(Path.Combine(d, OptimumDirectory.ModelFile), [8, 8]);
        }
        File.WriteAllBytes(Path.Combine(hf, OptimumDirectory.ConfigFile), input);
        File.WriteAllBytes(Path.Combine(genai, OptimumDirectory.GenAiConfigFile), input);
        var outcome = new StringBuilder();
        var vocabulary = Path.Combine(dir, "vocabulary.json");
        File.WriteAllBytes(vocabulary, input);
        var (size, digest) = VocabularyIdentity.Read(vocabulary, 1 << 20); // tokenizer.json's vocabulary: size and digest, never an exception
        outcome.Append(size > 0).Append(digest is not null).Append(';');
        foreach (var d in (string[])[hf, genai])
        {
            try
            {
                var m = OptimumDirectory.TryDescribe(d);
                outcome.Append(m is null ? "none" : $"{m.VocabSize > 0}:{m.Decoder?.Layers is not null}:{m.Decoder?.Names is not null}").Append(';');
            }
            catch (ModelLoadException e)
            {
                if (e.Message.Contains('\n', StringComparison.Ordinal)) throw new InvalidOperationException("a configuration error spans lines: " + e.Message);
                var reason = e.Message.Replace(d, "", StringComparison.Ordinal);
                outcome.Append("refused:").Append(reason.AsSpan(0, Math.Min(reason.Length, 36))).Append(';');
            }
        }
        return outcome.ToString();
    }, _ => false);

    /// <summary>ONNX files as the loader first reads them: the operator and input-type scan that runs before ONNX Runtime.</summary>
    public static FuzzTarget OnnxScan(string dir) => new("onnx-scan", OnnxSeeds(), input =>
    {
        var path = Path.Combine(dir, "scan.onnx");
        File.WriteAllBytes(path, input);
        var (operators, types) = OnnxOperators.Summarize(path);
        return $"{operators.Count}:{types.Count}";
    }, ex => ex is InvalidDataException);

    public static OpenSession Open(DecodingMode mode) => new()
    {
        SessionId = "fuzz", DeviceId = "fuzz", Epoch = 1, Mode = mode, VocabSize = 16, MaxGamma = 8, Seed = 11, MaxTokens = 64, StopTokens = [3],
        Sampling = new SamplingSettings { Temperature = mode == DecodingMode.Greedy ? 0f : 0.9f, TopK = 0, TopP = 1f },
    };

    private static List<byte[]> WireSeeds()
    {
        var digest = PrefixDigest.Empty;
        digest.Append([1, 2, 3]);
        var q = new float[2 * 16];
        Array.Fill(q, 1f / 16);
        return
        [
            WireCodec.Encode(Open(DecodingMode.Rsr)),
            WireCodec.Encode(new DraftRound { SessionId = "fuzz", Epoch = 1, Round = 1, CommittedLength = 3, PrefixDigest = digest.Value, Pending = [1, 2, 3], Draft = [4, 5], DraftProbs = [0.5f, 0.25f], Proposals = 8 }),
            WireCodec.Encode(new DraftRound { SessionId = "fuzz", Epoch = 1, Round = 1, CommittedLength = 3, PrefixDigest = digest.Value, Pending = [1, 2, 3], Draft = [4, 5], DraftDistributions = MemoryMarshal.AsBytes(q.AsSpan()).ToArray() }),
            WireCodec.Encode(new DraftRound { SessionId = "fuzz", Epoch = 1, Round = 1, CommittedLength = 3, PrefixDigest = digest.Value, Pending = [1, 2, 3], Draft = [4] }),
            WireCodec.Encode(new DraftRound { SessionId = "fuzz", Epoch = 1, Round = 1, CommittedLength = 3, PrefixDigest = digest.Value, Pending = [1, 2, 3], DraftProbs = [], Proposals = 4, Stream = 6 }),
            WireCodec.Encode(new TokenChunk { SessionId = "fuzz", Epoch = 1, Round = 1, Index = 3, Tokens = [4, 5, 6], BatchSize = 2 }),
            WireCodec.Encode(new TokenChunk { SessionId = "fuzz", Epoch = 1, Round = 1, Index = 5, Tokens = [7], Done = true }),
            WireCodec.Encode(new MoreProposals { SessionId = "fuzz", Epoch = 1, Round = 1, Attempt = 1, Proposals = 8 }),
            WireCodec.Encode(new CloseSession { SessionId = "fuzz", Epoch = 1 }),
            WireCodec.Encode(new SessionOpened { SessionId = "fuzz", Epoch = 1, VerifierId = "v", TargetModel = "m" }),
            WireCodec.Encode(new Verdict { SessionId = "fuzz", Epoch = 1, Round = 1, Accepted = 2, Kind = VerdictKind.Token, Token = 3 }),
            WireCodec.Encode(new Verdict { SessionId = "fuzz", Epoch = 1, Round = 1, Accepted = 1, Kind = VerdictKind.Proposals, ProposalTokens = [1, 2, 3], ProposalProbs = [0.5f, 0.3f, 0.2f] }),
            WireCodec.Encode(new Verdict { SessionId = "fuzz", Epoch = 1, Round = 1, Accepted = 0, Kind = VerdictKind.TargetDistribution, TargetDistribution = MemoryMarshal.AsBytes(q.AsSpan(0, 16)).ToArray() }),
            WireCodec.Encode(new ErrorReply { Code = ErrorCode.Overloaded, Message = "slow down", SessionId = "fuzz", Round = 1 }),
        ];
    }

    private static List<byte[]> PresenceSeeds() =>
    [
        Encoding.UTF8.GetBytes(TopicScheme.VerifierStatus("v1") + "\0").Concat(new PresencePayload { Role = "verifier", Id = "v1", Model = "m" }.ToJson()).ToArray(),
        new PresencePayload { State = "offline", Role = "verifier", Id = "v2" }.ToJson(),
        Encoding.UTF8.GetBytes("iotdsd/v1/verifiers//status\0{\"state\":\"online\"}"),
        Encoding.UTF8.GetBytes(TopicScheme.VerifierStatus("v2") + "\0").Concat(new PresencePayload { Role = "verifier", Id = "v2", Load = VerifierLoad.Of(7, 2, 3.5, 0.9, 2, 8) }.ToJson()).ToArray(),
        Encoding.UTF8.GetBytes(TopicScheme.VerifierStatus("v3") + "\0{\"state\":\"online\",\"load\":{\"score\":-1e308,\"sessions\":5,\"max_sessions\":5}}"),
    ];

    private static List<byte[]> ConfigSeeds() =>
        new[] { "127.0.0.1:1883", "[::1]:8883", "broker.example.net", "iotdsd/v1/verifiers/v1/rounds/dev-7", "iotdsd/v1/verifiers/v-1/status", "dev_7.a-b", "host:99999" }
            .Select(Encoding.UTF8.GetBytes).ToList();

    private static List<byte[]> JournalSeeds()
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-fuzz-journal-").FullName;
        try
        {
            using (var store = new Edge.Resilience.SessionStore(dir))
            {
                var state = new Core.Sessions.DraftSessionState { SessionId = "fuzz", Committed = [72, 105, 33], PromptLength = 2, Round = 1, Epoch = 1 };
                store.Save(state, "mode=rsr t=0.8 seed=1");
                for (var i = 0; i < 4; i++)
                {
                    state = state with { Committed = [.. state.Committed, 32 + i, 1000 + i], Round = state.Round + 1, Rounds = i + 1, Drafted = 4 * (i + 1), Accepted = 2 * i };
                    store.Save(state, "mode=rsr t=0.8 seed=1");
                }
            }

            return [File.ReadAllBytes(Path.Combine(dir, "fuzz" + Edge.Resilience.SessionStore.JournalSuffix)), [.. "IOTDSDJ"u8, 1]];
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static List<byte[]> ModelConfigSeeds() =>
    [
        Encoding.UTF8.GetBytes("""{"model_type":"llama","vocab_size":32000,"max_position_embeddings":2048,"num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"head_dim":64,"_name_or_path":"x"}"""),
        Encoding.UTF8.GetBytes("""{"model_type":"gpt_bigcode","vocab_size":49152,"n_positions":8192,"n_layer":24,"n_head":16,"multi_query":true}"""),
        Encoding.UTF8.GetBytes("""{"model":{"type":"phi3","vocab_size":32064,"context_length":4096,"decoder":{"filename":"model.onnx","head_size":96,"num_hidden_layers":32,"num_key_value_heads":32,"inputs":{"input_ids":"input_ids","attention_mask":"attention_mask","past_key_names":"past_key_values.%d.key","past_value_names":"past_key_values.%d.value"},"outputs":{"logits":"logits","present_key_names":"present.%d.key","present_value_names":"present.%d.value"}}},"search":{"max_length":4096}}"""),
        Encoding.UTF8.GetBytes("""{"model":{"vocab_size":50257,"decoder":{"filename":"../model.onnx","inputs":{"past_names":"past_%d"}}}}"""),
        Encoding.UTF8.GetBytes("""{"added_tokens":[{"id":3,"content":"<|end|>","special":true}],"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2}}}"""),
        Encoding.UTF8.GetBytes("""{"model":{"type":"Unigram","vocab":[["<unk>",0.0],["▁a",-1.5],["b",-2.0]]}}"""),
    ];

    private static List<byte[]> OnnxSeeds()
    {
        var g = new OnnxGraphBuilder("seed");
        g.UseOpset(OnnxOperators.MicrosoftDomain, 1);
        var x = g.AddInput("x", OnnxDataType.Float16, "n");
        var branch = new OnnxGraphBuilder("branch");
        branch.AddNode("Identity", [x], ["y_then"]);
        branch.AddOutput("y_then", OnnxDataType.Float16, "n");
        g.AddInput("c", OnnxDataType.Bool, 1);
        g.AddNode("If", ["c"], ["y"], "", OnnxAttribute.Graph("then_branch", branch), OnnxAttribute.Graph("else_branch", branch));
        g.OpInDomain(OnnxOperators.MicrosoftDomain, "GroupQueryAttention", ["y"], OnnxAttribute.Int("num_heads", 2));
        g.AddOutput("y", OnnxDataType.Float16, "n");
        return [g.ToBytes(), [0x3A, 0x05, 0x0A, 0x03, 0x22, 0x01, 0x41]];
    }

    private static List<byte[]> ManifestSeeds()
    {
        var manifest = new ModelManifest
        {
            Kind = "ngram", Role = "draft", Name = "fuzz", VocabSize = 256, Tokenizer = "bytes", Order = 3,
            Files = new() { ["model"] = "model.onnx" }, Sha256 = new() { ["model"] = new string('0', 64) },
            Corpus = new CorpusInfo("c", 10, new string('a', 64)), Discounts = [0.5, 0.7],
        };
        return
        [
            Encoding.UTF8.GetBytes(manifest.ToJson()),
            Encoding.UTF8.GetBytes("""{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":"bytes","files":{"model":"../x"},"sha256":null}"""),
        ];
    }
}

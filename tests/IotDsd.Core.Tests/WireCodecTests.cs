using System.Buffers;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using MessagePack;

namespace IotDsd.Core.Tests;

public sealed class WireCodecTests
{
    private static readonly string[] Names = ["OpenSession", "DraftRound", "MoreProposals", "CloseSession", "SessionOpened", "Verdict", "ErrorReply"];

    public static TheoryData<string> MessageNames() => [.. Names];

    private static object Sample(string name) => name switch
    {
        "OpenSession" => new OpenSession
        {
            SessionId = "sess-1", DeviceId = "dev-1", Epoch = 3, Mode = DecodingMode.Rsr,
            Sampling = new SamplingSettings { Temperature = 0.7f, TopK = 40, TopP = 0.9f }, Seed = ulong.MaxValue - 5, MaxTokens = 128,
            VocabSize = 32000, MaxGamma = 8, VocabularyDigest = "0123456789abcdef",
        },
        "DraftRound" => new DraftRound
        {
            SessionId = "sess-1", Epoch = 3, Round = long.MaxValue / 3, CommittedLength = 17, PrefixDigest = 0xDEADBEEFCAFEF00DUL,
            Pending = [1, 2, 3, int.MaxValue], Draft = [4, 5], DraftProbs = [0.25f, 1f], DraftDistributions = [1, 2, 3, 255], Proposals = 8,
        },
        "MoreProposals" => new MoreProposals { SessionId = "sess-1", Epoch = 3, Round = 9, Attempt = 2, Proposals = 16 },
        "CloseSession" => new CloseSession { SessionId = "sess-1", Epoch = 3 },
        "SessionOpened" => new SessionOpened { SessionId = "sess-1", Epoch = 3, VerifierId = "ver-a", TargetModel = "qwen-0.5b", MaxTreeNodes = 64, ConditionalRounds = true, Sessions = 12, PassFixedMs = 21.5f, PassPerTokenMs = 2.25f },
        "Verdict" => new Verdict
        {
            SessionId = "sess-1", Epoch = 3, Round = 9, Attempt = 1, Accepted = 2, Kind = VerdictKind.Proposals, Token = -1,
            TargetDistribution = [0, 0, 128, 63], ProposalTokens = [7, 8, 9], ProposalProbs = [0.5f, 0.25f, 1e-9f],
            BatchSize = 4, QueueDepth = 2, VerifyMicros = 1234, PassTokens = 37,
        },
        "ErrorReply" => new ErrorReply { Code = ErrorCode.PrefixMismatch, Message = "resend the prefix ✓", SessionId = "sess-1", Round = 9 },
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(MessageNames))]
    public void Decode_EncodedMessage_RoundTripsExactly(string name)
    {
        var message = Sample(name);
        var bytes = WireCodec.Encode(message);
        var result = WireCodec.Decode(bytes);
        Assert.True(result.Ok, result.Reason);
        Assert.Null(result.Error);
        Assert.IsType(message.GetType(), result.Message);
        Assert.Equal(bytes, WireCodec.Encode(result.Message!));
        Assert.Equal(WireCodec.TypeOf(message), (MessageType)bytes[2]);
    }

    [Fact]
    public void Decode_VerdictAndRound_FieldsSurvive()
    {
        var verdict = (Verdict)WireCodec.Decode(WireCodec.Encode(Sample("Verdict"))).Message!;
        Assert.Equal(VerdictKind.Proposals, verdict.Kind);
        Assert.Equal([7, 8, 9], verdict.ProposalTokens!);
        Assert.Equal([0.5f, 0.25f, 1e-9f], verdict.ProposalProbs!);
        Assert.Equal([0, 0, 128, 63], verdict.TargetDistribution!);
        Assert.Equal(1234, verdict.VerifyMicros);
        Assert.Equal(37, verdict.PassTokens);

        var round = (DraftRound)WireCodec.Decode(WireCodec.Encode(Sample("DraftRound"))).Message!;
        Assert.Equal(0xDEADBEEFCAFEF00DUL, round.PrefixDigest);
        Assert.Equal(long.MaxValue / 3, round.Round);
        Assert.Equal([1, 2, 3, int.MaxValue], round.Pending);
        Assert.Equal([0.25f, 1f], round.DraftProbs!);

        var open = (OpenSession)WireCodec.Decode(WireCodec.Encode(Sample("OpenSession"))).Message!;
        Assert.Equal(ulong.MaxValue - 5, open.Seed);
        Assert.Equal(0.9f, open.Sampling.TopP);
        Assert.Equal("0123456789abcdef", open.VocabularyDigest);
    }

    [Fact]
    public void Decode_NullableFieldsAbsent_RoundTripAsNull()
    {
        var round = new DraftRound { SessionId = "s", Pending = [1] };
        var decoded = (DraftRound)WireCodec.Decode(WireCodec.Encode(round)).Message!;
        Assert.Null(decoded.DraftProbs);
        Assert.Null(decoded.DraftDistributions);
        Assert.Empty(decoded.Draft);
    }

    [Fact]
    public void Encode_CloseSession_GoldenBytes()
    {
        // [version 1, type 4, [ "s", 2 ]] — fixarray(3), 1, 4, fixarray(2), fixstr(1) 's', 2.
        byte[] golden = [0x93, 0x01, 0x04, 0x92, 0xA1, 0x73, 0x02];
        Assert.Equal(golden, WireCodec.Encode(new CloseSession { SessionId = "s", Epoch = 2 }));
        var decoded = Assert.IsType<CloseSession>(WireCodec.Decode(golden).Message);
        Assert.Equal("s", decoded.SessionId);
        Assert.Equal(2, decoded.Epoch);
    }

    [Fact]
    public void Encode_MoreProposals_GoldenBytes()
    {
        // Round 300 is written as uint16 (0xCD 0x01 0x2C): the integer encoding is compact and pinned.
        byte[] golden = [0x93, 0x01, 0x03, 0x95, 0xA2, 0x61, 0x62, 0x01, 0xCD, 0x01, 0x2C, 0x02, 0x08];
        Assert.Equal(golden, WireCodec.Encode(new MoreProposals { SessionId = "ab", Epoch = 1, Round = 300, Attempt = 2, Proposals = 8 }));
    }

    [Fact]
    public void TypeOf_NotAWireMessage_Throws()
    {
        Assert.Throws<ArgumentException>(() => WireCodec.TypeOf("text"));
        Assert.Throws<ArgumentException>(() => WireCodec.Encode(new object()));
    }

    private delegate void Build(ref MessagePackWriter writer);

    private static byte[] Write(Build build)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        build(ref writer);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] Envelope(long version, long type, byte[] body) =>
        [.. Write((ref MessagePackWriter w) =>
        {
            w.WriteArrayHeader(3);
            w.Write(version);
            w.Write(type);
        }), .. body];

    private static readonly byte[] CloseBody = [0x92, 0xA1, 0x73, 0x02];

    public static TheoryData<string, byte[]> MalformedPayloads() => new()
    {
        { "nil", [0xC0] },
        { "integer", [0x01] },
        { "map", [0x81, 0x01, 0x02] },
        { "string", [0xA2, 0x68, 0x69] },
        { "binary", [0xC4, 0x01, 0x00] },
        { "two-element envelope", [0x92, 0x01, 0x04] },
        { "empty array", [0x90] },
        { "string version", [0x93, 0xA1, 0x31, 0x04, .. CloseBody] },
        { "nil version", [0x93, 0xC0, 0x04, .. CloseBody] },
        { "string type", [0x93, 0x01, 0xA1, 0x34, .. CloseBody] },
        { "header only", [0x93] },
        { "no body", [0x93, 0x01, 0x04] },
        { "body not an array", [0x93, 0x01, 0x04, 0xA1, 0x73] },
        { "body field of wrong type", [0x93, 0x01, 0x04, 0x92, 0x07, 0x02] },
        { "body truncated", [0x93, 0x01, 0x04, 0x92, 0xA5, 0x73] },
        { "reserved byte", [0x93, 0x01, 0x04, 0xC1] },
        { "array32 truncated", [0xDD, 0x00, 0x00] },
    };

    [Theory]
    [MemberData(nameof(MalformedPayloads))]
    public void Decode_MalformedPayload_FailsWithMalformed(string what, byte[] payload)
    {
        var result = WireCodec.Decode(payload);
        Assert.False(result.Ok, what);
        Assert.Equal(ErrorCode.Malformed, result.Error);
        Assert.False(string.IsNullOrWhiteSpace(result.Reason));
    }

    [Fact]
    public void Decode_EmptyPayload_FailsWithMalformed()
    {
        Assert.Equal(ErrorCode.Malformed, WireCodec.Decode(ReadOnlyMemory<byte>.Empty).Error);
    }

    [Fact]
    public void Decode_NilBodyForKnownType_FailsWithMalformed()
    {
        var result = WireCodec.Decode(Envelope(1, (long)MessageType.CloseSession, [0xC0]));
        Assert.False(result.Ok);
        Assert.Equal(ErrorCode.Malformed, result.Error);
    }

    [Fact]
    public void Decode_EveryTruncation_FailsWithoutThrowing()
    {
        foreach (var name in Names)
        {
            var bytes = WireCodec.Encode(Sample(name));
            for (var length = 0; length < bytes.Length; length++)
            {
                var result = WireCodec.Decode(bytes.AsMemory(0, length));
                Assert.False(result.Ok, $"{name} truncated to {length} of {bytes.Length} bytes decoded");
                Assert.Equal(ErrorCode.Malformed, result.Error);
            }
        }
    }

    [Fact]
    public void Decode_OverLimit_FailsWithTooLarge()
    {
        var bytes = WireCodec.Encode(Sample("DraftRound"));
        Assert.Equal(ErrorCode.TooLarge, WireCodec.Decode(bytes, maxPayloadBytes: bytes.Length - 1).Error);
        Assert.True(WireCodec.Decode(bytes, maxPayloadBytes: bytes.Length).Ok);
        var huge = new byte[WireCodec.DefaultMaxPayloadBytes + 1];
        huge[0] = 0x93;
        Assert.Equal(ErrorCode.TooLarge, WireCodec.Decode(huge).Error);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(-1)]
    [InlineData(long.MaxValue)]
    public void Decode_UnknownVersion_FailsWithUnsupportedVersion(long version)
    {
        var result = WireCodec.Decode(Envelope(version, (long)MessageType.CloseSession, CloseBody));
        Assert.Equal(ErrorCode.UnsupportedVersion, result.Error);
        Assert.Contains(version.ToString(System.Globalization.CultureInfo.InvariantCulture), result.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(9)]
    [InlineData(13)]
    [InlineData(255)]
    public void Decode_UnknownType_FailsWithUnexpectedMessage(long type)
    {
        Assert.Equal(ErrorCode.UnexpectedMessage, WireCodec.Decode(Envelope(1, type, CloseBody)).Error);
    }

    [Fact]
    public void Decode_ExtraEnvelopeElements_StillDecodes()
    {
        // Forward compatibility: a later version may append envelope elements; this one reads the first three.
        byte[] payload = [0x94, 0x01, 0x04, .. CloseBody, 0xC0];
        Assert.IsType<CloseSession>(WireCodec.Decode(payload).Message);
    }

    public static TheoryData<string, byte[]> HugeHeaders() => new()
    {
        // DraftRound body: 10 fields, the Pending array claims 2^32 − 1 elements in a payload of a few bytes.
        { "array32 pending", [0x93, 0x01, 0x02, 0x9A, 0xA1, 0x73, 0x01, 0x01, 0x01, 0x01, 0xDD, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02] },
        { "array32 body", [0x93, 0x01, 0x02, 0xDD, 0x7F, 0xFF, 0xFF, 0xFF, 0x01] },
        { "array32 envelope", [0xDD, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02] },
        { "str32 session", [0x93, 0x01, 0x04, 0x92, 0xDB, 0x7F, 0xFF, 0xFF, 0xFF, 0x73] },
        { "bin32 rows", [0x93, 0x01, 0x02, 0x9A, 0xA1, 0x73, 0x01, 0x01, 0x01, 0x01, 0x90, 0x90, 0xC0, 0xC6, 0x7F, 0xFF, 0xFF, 0xFF, 0x00] },
        { "map32 body", [0x93, 0x01, 0x0B, 0xDF, 0x7F, 0xFF, 0xFF, 0xFF, 0x00] },
        { "float array", [0x93, 0x01, 0x0B, 0x9A, 0xA1, 0x73, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0xC0, 0xC0, 0xDD, 0x10, 0x00, 0x00, 0x00, 0xCA] },
    };

    [Theory]
    [MemberData(nameof(HugeHeaders))]
    public void Decode_HugeLengthHeaderInTinyPayload_FailsWithoutAllocating(string what, byte[] payload)
    {
        foreach (var name in Names)
        {
            Assert.True(WireCodec.Decode(WireCodec.Encode(Sample(name))).Ok); // formatters built before measuring
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        var result = WireCodec.Decode(payload);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.False(result.Ok, what);
        Assert.Equal(ErrorCode.Malformed, result.Error);
        Assert.True(allocated < 1_000_000, $"{what}: decoding allocated {allocated} bytes");
    }

    [Fact]
    public void Decode_DeeplyNestedBody_FailsWithMalformed()
    {
        var nested = Enumerable.Repeat((byte)0x91, 100_000).Append((byte)0xC0).ToArray();
        var result = WireCodec.Decode(Envelope(1, (long)MessageType.Verdict, nested));
        Assert.False(result.Ok);
        Assert.Equal(ErrorCode.Malformed, result.Error);
    }

    [Fact]
    public void Decode_SeededRandomAndMutatedInputs_NeverThrows()
    {
        var random = new Random(1337);
        var valid = Names.Select(n => WireCodec.Encode(Sample(n))).ToArray();
        var decoded = 0;
        for (var i = 0; i < 6000; i++)
        {
            byte[] payload;
            if (i % 2 == 0)
            {
                payload = new byte[random.Next(0, 48)];
                random.NextBytes(payload);
                if (payload.Length > 0 && i % 4 == 0)
                {
                    payload[0] = 0x93; // mostly look like an envelope, to get past the first checks
                    if (payload.Length > 2)
                    {
                        payload[1] = 0x01;
                        payload[2] = (byte)Enum.GetValues<MessageType>()[random.Next(7)];
                    }
                }
            }
            else
            {
                payload = Mutate(valid[random.Next(valid.Length)], random);
            }

            DecodeResult result = default;
            var thrown = Record.Exception(() => result = WireCodec.Decode(payload));
            Assert.True(thrown is null, $"input {i} [{Convert.ToHexString(payload)}] threw {thrown}");
            Assert.True(result.Ok ^ (result.Error is not null), $"input {i}: a result is either a message or an error");
            if (result.Ok)
            {
                decoded++;
                WireCodec.Encode(result.Message!); // whatever decodes re-encodes
            }
        }

        Assert.True(decoded > 0, "no mutation survived; the fuzzer is not reaching the bodies");
    }

    private static byte[] Mutate(byte[] source, Random random)
    {
        var bytes = source.ToList();
        var edits = 1 + random.Next(4);
        for (var e = 0; e < edits && bytes.Count > 0; e++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(5))
            {
                case 0: bytes[at] = (byte)random.Next(256); break;
                case 1: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 2: bytes.RemoveAt(at); break;
                case 3: bytes.Insert(at, (byte)random.Next(256)); break;
                default: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }

        return [.. bytes];
    }

    [Fact]
    public void Decode_MultiSegmentSequence_SameAsContiguous()
    {
        var bytes = WireCodec.Encode(Sample("Verdict"));
        var first = new Segment(bytes.AsMemory(0, 5));
        var last = first.Append(bytes.AsMemory(5));
        var result = WireCodec.Decode(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length));
        Assert.True(result.Ok, result.Reason);
        Assert.Equal(bytes, WireCodec.Encode(result.Message!));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}

public sealed class TopicSchemeTests
{
    [Theory]
    [InlineData("dev-1")]
    [InlineData("a")]
    [InlineData("A.b_C-9")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123")]
    public void IsValidId_AllowedCharacters_True(string id) => Assert.True(TopicScheme.IsValidId(id));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("a/b")]
    [InlineData("+")]
    [InlineData("#")]
    [InlineData("dev 1")]
    [InlineData("$SYS")]
    [InlineData("dév")]
    [InlineData("a\0b")]
    [InlineData("01234567890123456789012345678901234567890123456789012345678901234")]
    public void IsValidId_WildcardsSeparatorsOrTooLong_False(string? id) => Assert.False(TopicScheme.IsValidId(id));

    [Fact]
    public void Builders_ProduceDocumentedTopics()
    {
        Assert.Equal("iotdsd/v1/devices/d1/status", TopicScheme.DeviceStatus("d1"));
        Assert.Equal("iotdsd/v1/devices/d1/replies", TopicScheme.DeviceReplies("d1"));
        Assert.Equal("iotdsd/v1/verifiers/v1/status", TopicScheme.VerifierStatus("v1"));
        Assert.Equal("iotdsd/v1/verifiers/+/status", TopicScheme.AllVerifierStatus);
        Assert.Equal("iotdsd/v1/verifiers/v1/rounds/d1", TopicScheme.VerifierRounds("v1", "d1"));
        Assert.Equal("iotdsd/v1/verifiers/v1/rounds/+", TopicScheme.VerifierRoundsFilter("v1"));
    }

    [Theory]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/d1", "d1")]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/dev.2_x-y", "dev.2_x-y")]
    [InlineData("iotdsd/v1/verifiers/v2/rounds/d1", null)]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/", null)]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/d1/extra", null)]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/+", null)]
    [InlineData("iotdsd/v2/verifiers/v1/rounds/d1", null)]
    [InlineData("IOTDSD/v1/verifiers/v1/rounds/d1", null)]
    [InlineData("iotdsd/v1/verifiers/v10/rounds/d1", null)]
    public void DeviceFromRoundsTopic_ParsesOnlyOwnRoundsTopics(string topic, string? expected) =>
        Assert.Equal(expected, TopicScheme.DeviceFromRoundsTopic(topic, "v1"));

    [Theory]
    [InlineData("iotdsd/v1/verifiers/v1/status", "v1")]
    [InlineData("iotdsd/v1/verifiers/ver.a-1/status", "ver.a-1")]
    [InlineData("iotdsd/v1/verifiers//status", null)]
    [InlineData("iotdsd/v1/verifiers/a/b/status", null)]
    [InlineData("iotdsd/v1/verifiers/v1/rounds/d1", null)]
    [InlineData("iotdsd/v1/devices/d1/status", null)]
    [InlineData("iotdsd/v1/verifiers/status", null)]
    [InlineData("iotdsd/v1/verifiers/+/status", null)]
    public void VerifierFromStatusTopic_ParsesOnlyStatusTopics(string topic, string? expected) =>
        Assert.Equal(expected, TopicScheme.VerifierFromStatusTopic(topic));

    [Fact]
    public void Parsers_RoundTripBuilders()
    {
        Assert.Equal("d-9", TopicScheme.DeviceFromRoundsTopic(TopicScheme.VerifierRounds("v.1", "d-9"), "v.1"));
        Assert.Equal("v.1", TopicScheme.VerifierFromStatusTopic(TopicScheme.VerifierStatus("v.1")));
    }
}

public sealed class DecodingModesTests
{
    [Theory]
    [InlineData("greedy", DecodingMode.Greedy)]
    [InlineData("DSD", DecodingMode.Dsd)]
    [InlineData("dssd", DecodingMode.Dssd)]
    [InlineData("Rsr", DecodingMode.Rsr)]
    public void TryParse_KnownName_ParsesAndRoundTrips(string text, DecodingMode expected)
    {
        Assert.True(DecodingModes.TryParse(text, out var mode));
        Assert.Equal(expected, mode);
        Assert.True(DecodingModes.TryParse(mode.Name(), out var again));
        Assert.Equal(mode, again);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("sample")]
    [InlineData("3")]
    public void TryParse_UnknownName_False(string? text) => Assert.False(DecodingModes.TryParse(text, out _));

    [Fact]
    public void Name_UnknownValue_Throws() => Assert.Throws<ArgumentOutOfRangeException>(() => ((DecodingMode)42).Name());
}

using System.Text;
using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sessions;
using IotDsd.Inference.Models;

namespace IotDsd.Fuzz;

/// <summary>Inputs the fuzzer (or a review of its targets) found to break a decoder; each stays fixed.</summary>
public sealed class RegressionTests
{
    /// <summary>Found by the wire target: a DraftRound whose pending tokens are MessagePack nil reached the session check as null.</summary>
    [Fact]
    public void Decode_RoundWithNilPending_MalformedNotNullReference()
    {
        var input = Convert.FromHexString(
            "93010296A466757A7A010103CFFDC0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0" +
            "C0C0C0C0C0C0C0C0C0C0C0C0C0C0C01F0F4381EB93939393939393939393939393939393930202020102");
        var decoded = WireCodec.Decode(input);
        Assert.False(decoded.Ok);
        Assert.Equal(ErrorCode.Malformed, decoded.Error);
    }

    /// <summary>Found by the onnx-scan target: a varint running past the end of its message, and a name past the end of the file.</summary>
    [Theory]
    [InlineData("3A050AA0A0A0A0A0A003225B01A0")]
    [InlineData("3A050A0322FF8000000000000322FFFF0000000000000000")]
    public void OnnxScan_FieldPastItsMessage_InvalidData(string hex)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iotdsd-scan-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, Convert.FromHexString(hex));
        try
        {
            Assert.Throws<InvalidDataException>(() => IotDsd.Inference.Onnx.OnnxOperators.Summarize(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Found by the model-config target: invalid UTF-8 inside a string, and a decoder file name holding a newline.</summary>
    [Theory]
    [InlineData("7B226D6F64656C223A7B22766F6361625F73697A65223A382C226465636F646572223A7B2266696C656E616D65223A22C227227D7D7D", "not valid JSON")]
    [InlineData("7B226D6F64656C223A7B22766F6361625F73697A65223A382C226465636F646572223A7B2266696C656E616D65223A22615C6E62227D7D7D", "'a?b'")]
    public void GenAiConfig_BadText_OneLineRefusal(string hex, string expected)
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-genai-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, OptimumDirectory.TokenizerFile), "{}");
            File.WriteAllBytes(Path.Combine(dir, OptimumDirectory.GenAiConfigFile), Convert.FromHexString(hex));
            var e = Assert.Throws<ModelLoadException>(() => OptimumDirectory.TryDescribe(dir));
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains(expected, e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static readonly TheoryData<string, object> NilFields = new()
    {
        { "pending", new DraftRound { SessionId = "s", Pending = null!, Draft = [1] } },
        { "draft", new DraftRound { SessionId = "s", Pending = [1], Draft = null! } },
        { "session_id", new DraftRound { SessionId = null!, Pending = [1], Draft = [1] } },
        { "sampling", new OpenSession { SessionId = "s", DeviceId = "d", Sampling = null! } },
        { "device_id", new OpenSession { SessionId = "s", DeviceId = null! } },
        { "session_id", new MoreProposals { SessionId = null! } },
        { "session_id", new CloseSession { SessionId = null! } },
        { "session_id", new Verdict { SessionId = null! } },
        { "message", new ErrorReply { Message = null! } },
    };

    [Theory]
    [MemberData(nameof(NilFields))]
    public void Decode_RequiredFieldNil_MalformedNamingTheField(string field, object message)
    {
        var decoded = WireCodec.Decode(WireCodec.Encode(message));
        Assert.Equal(ErrorCode.Malformed, decoded.Error);
        Assert.Contains(field, decoded.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_RoundThatDecodes_NeverThrows()
    {
        using var session = new VerifierSession(new ToyModel(), Targets.Open(DecodingMode.Dsd), "d");
        var round = new DraftRound { SessionId = "fuzz", Epoch = 1, Round = 1, CommittedLength = 1, Pending = [1], Draft = [1, 2], DraftDistributions = [1, 2, 3] };
        Assert.Equal(RoundCheckKind.Error, session.Check(round).Kind);
    }

    public static readonly TheoryData<string> BadManifests = new()
    {
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":"bytes","files":null}""",
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":"bytes","files":{"model":"m.onnx"},"sha256":null}""",
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":"bytes","files":{"model":null},"sha256":{"model":null}}""",
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":"bytes","files":{"model":"a\u0000b"}}""",
        """{"format":null,"kind":null,"vocab_size":256}""",
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":256,"tokenizer":null,"files":{"model":"m.onnx"}}""",
        """{"format":"iotdsd-model/1","kind":"ngram","vocab_size":1e400}""",
        """[]""",
        """null""",
    };

    /// <summary>Nulls where a manifest promises objects, NUL in a file name: a clear <see cref="ModelLoadException"/>, never a crash.</summary>
    [Theory]
    [MemberData(nameof(BadManifests))]
    public void ReadManifest_NullsAndBadNames_ModelLoadException(string json)
    {
        var dir = Directory.CreateTempSubdirectory("iotdsd-manifest-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, ModelManifest.FileName), Encoding.UTF8.GetBytes(json));
            File.WriteAllBytes(Path.Combine(dir, "m.onnx"), [1, 2, 3]);
            var error = Assert.Throws<ModelLoadException>(() =>
            {
                var manifest = ModelDirectory.ReadManifest(dir);
                _ = Inference.Tokenizers.TokenizerFactory.ForManifest(manifest, dir);
                ModelDirectory.Validate(dir);
            });
            Assert.False(string.IsNullOrWhiteSpace(error.Message));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

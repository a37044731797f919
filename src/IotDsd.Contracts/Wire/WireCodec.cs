using System.Buffers;
using IotDsd.Contracts.Messages;
using MessagePack;

namespace IotDsd.Contracts.Wire;

/// <summary>Message type tags in the envelope. Append only.</summary>
public enum MessageType : byte
{
    OpenSession = 1,
    DraftRound = 2,
    MoreProposals = 3,
    CloseSession = 4,
    SessionOpened = 10,
    Verdict = 11,
    ErrorReply = 12,
    StreamRequest = 20,
    TokenChunk = 21,
}

/// <summary>
/// The envelope every payload uses: a MessagePack array <c>[version, type, body]</c>. Decoding reads the version
/// and the type before touching the body, so an unknown version or type is refused without guessing.
/// </summary>
public static class WireCodec
{
    /// <summary>The protocol version this build speaks.</summary>
    public const int ProtocolVersion = 1;

    /// <summary>Default upper bound on a payload; a dense dsd round at V = 152k and γ = 8 fits.</summary>
    public const int DefaultMaxPayloadBytes = 8 * 1024 * 1024;

    /// <summary>Untrusted-data settings: hash-collision-resistant collections and a shallow depth limit.</summary>
    public static readonly MessagePackSerializerOptions Options = MessagePackSerializerOptions.Standard
        .WithSecurity(MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(8));

    /// <summary>The envelope tag of a message object.</summary>
    public static MessageType TypeOf(object message) => message switch
    {
        OpenSession => MessageType.OpenSession,
        DraftRound => MessageType.DraftRound,
        MoreProposals => MessageType.MoreProposals,
        CloseSession => MessageType.CloseSession,
        SessionOpened => MessageType.SessionOpened,
        Verdict => MessageType.Verdict,
        ErrorReply => MessageType.ErrorReply,
        StreamRequest => MessageType.StreamRequest,
        TokenChunk => MessageType.TokenChunk,
        _ => throw new ArgumentException($"{message.GetType().Name} is not a wire message", nameof(message)),
    };

    /// <summary>Writes the envelope and body into <paramref name="output"/>.</summary>
    public static void Write(IBufferWriter<byte> output, object message)
    {
        var writer = new MessagePackWriter(output);
        writer.WriteArrayHeader(3);
        writer.Write(ProtocolVersion);
        writer.Write((byte)TypeOf(message));
        switch (message)
        {
            case OpenSession m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case DraftRound m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case MoreProposals m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case CloseSession m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case SessionOpened m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case Verdict m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case ErrorReply m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case StreamRequest m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
            case TokenChunk m: MessagePackSerializer.Serialize(ref writer, m, Options); break;
        }

        writer.Flush();
    }

    /// <summary>Encodes into a new array (for tests and cold paths).</summary>
    public static byte[] Encode(object message)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(buffer, message);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Decodes a payload received from the network. Never throws for bad input.</summary>
    public static DecodeResult Decode(ReadOnlySequence<byte> payload, int maxPayloadBytes = DefaultMaxPayloadBytes)
    {
        if (payload.Length > maxPayloadBytes)
        {
            return DecodeResult.Fail(ErrorCode.TooLarge, $"payload of {payload.Length} bytes exceeds the limit of {maxPayloadBytes}");
        }

        if (payload.IsEmpty)
        {
            return DecodeResult.Fail(ErrorCode.Malformed, "empty payload");
        }

        try
        {
            var reader = new MessagePackReader(payload);
            if (reader.NextMessagePackType != MessagePackType.Array)
            {
                return DecodeResult.Fail(ErrorCode.Malformed, "payload is not an IotDsd envelope (expected a MessagePack array)");
            }

            var count = reader.ReadArrayHeader();
            if (count < 3)
            {
                return DecodeResult.Fail(ErrorCode.Malformed, $"envelope has {count} elements, expected 3");
            }

            if (reader.NextMessagePackType != MessagePackType.Integer)
            {
                return DecodeResult.Fail(ErrorCode.Malformed, "envelope version is not an integer");
            }

            var version = reader.ReadInt64();
            if (version != ProtocolVersion)
            {
                return DecodeResult.Fail(ErrorCode.UnsupportedVersion, $"protocol version {version} is not supported (this build speaks {ProtocolVersion})");
            }

            var type = (MessageType)reader.ReadByte();
            if (!Enum.IsDefined(type))
            {
                return DecodeResult.Fail(ErrorCode.UnexpectedMessage, $"unknown message type {(byte)type}");
            }

            object? body = type switch
            {
                MessageType.OpenSession => MessagePackSerializer.Deserialize<OpenSession>(ref reader, Options),
                MessageType.DraftRound => MessagePackSerializer.Deserialize<DraftRound>(ref reader, Options),
                MessageType.MoreProposals => MessagePackSerializer.Deserialize<MoreProposals>(ref reader, Options),
                MessageType.CloseSession => MessagePackSerializer.Deserialize<CloseSession>(ref reader, Options),
                MessageType.SessionOpened => MessagePackSerializer.Deserialize<SessionOpened>(ref reader, Options),
                MessageType.Verdict => MessagePackSerializer.Deserialize<Verdict>(ref reader, Options),
                MessageType.ErrorReply => MessagePackSerializer.Deserialize<ErrorReply>(ref reader, Options),
                MessageType.StreamRequest => MessagePackSerializer.Deserialize<StreamRequest>(ref reader, Options),
                MessageType.TokenChunk => MessagePackSerializer.Deserialize<TokenChunk>(ref reader, Options),
                _ => null,
            };
            if (body is null)
            {
                return DecodeResult.Fail(ErrorCode.Malformed, $"{type} body is nil");
            }

            if (NilField(body) is { } field)
            {
                return DecodeResult.Fail(ErrorCode.Malformed, $"{type} field {field} is nil");
            }

            return new DecodeResult(body, null, null);
        }
        catch (Exception ex) when (ex is MessagePackSerializationException or EndOfStreamException or OverflowException or InvalidOperationException)
        {
            return DecodeResult.Fail(ErrorCode.Malformed, $"malformed payload: {Shorten(ex)}");
        }
    }

    /// <inheritdoc cref="Decode(ReadOnlySequence{byte}, int)"/>
    public static DecodeResult Decode(ReadOnlyMemory<byte> payload, int maxPayloadBytes = DefaultMaxPayloadBytes) =>
        Decode(new ReadOnlySequence<byte>(payload), maxPayloadBytes);

    /// <summary>MessagePack lets nil stand for any reference; fields the protocol requires must not be nil.</summary>
    private static string? NilField(object body) => body switch
    {
        OpenSession m when m.SessionId is null => "session_id",
        OpenSession m when m.DeviceId is null => "device_id",
        OpenSession m when m.Sampling is null => "sampling",
        DraftRound m when m.SessionId is null => "session_id",
        DraftRound m when m.Pending is null => "pending",
        DraftRound m when m.Draft is null => "draft",
        MoreProposals m when m.SessionId is null => "session_id",
        CloseSession m when m.SessionId is null => "session_id",
        SessionOpened m when m.SessionId is null || m.VerifierId is null || m.TargetModel is null => "session_id, verifier_id or target_model",
        Verdict m when m.SessionId is null => "session_id",
        ErrorReply m when m.Message is null => "message",
        StreamRequest m when m.SessionId is null || m.DeviceId is null || m.Prompt is null || m.Sampling is null => "session_id, device_id, prompt or sampling",
        TokenChunk m when m.SessionId is null || m.Tokens is null => "session_id or tokens",
        _ => null,
    };

    private static string Shorten(Exception ex)
    {
        var inner = ex;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        var text = inner.Message;
        return text.Length <= 200 ? text : text[..200];
    }
}

/// <summary>The outcome of <see cref="WireCodec.Decode(ReadOnlySequence{byte}, int)"/>: a message, or an error code and reason.</summary>
public readonly record struct DecodeResult(object? Message, ErrorCode? Error, string? Reason)
{
    /// <summary>True when <see cref="Message"/> holds a decoded message.</summary>
    public bool Ok => Message is not null;

    internal static DecodeResult Fail(ErrorCode code, string reason) => new(null, code, reason);
}

using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using IotDsd.Core.Sessions;

namespace IotDsd.Edge.Resilience;

/// <summary>The journal's records: framing with a CRC-32, the snapshot and round payloads, and their varint coding.</summary>
public sealed partial class SessionStore
{
    private static byte[] Frame(byte[] payload)
    {
        var frame = new byte[FrameBytes + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), Crc32.HashToUInt32(payload));
        payload.CopyTo(frame, FrameBytes);
        return frame;
    }

    private static byte[] EncodeSnapshot(DraftSessionState s, string fingerprint)
    {
        var w = new VarintWriter(64 + (3 * s.Committed.Length));
        w.Byte(SnapshotKind);
        w.String(fingerprint);
        w.String(s.SessionId);
        w.Int(s.PromptLength);
        Counters(ref w, s);
        w.Tokens(s.Committed);
        return w.ToArray();
    }

    private static byte[] EncodeRound(DraftSessionState last, DraftSessionState s)
    {
        var w = new VarintWriter(48);
        w.Byte(RoundKind);
        Counters(ref w, s);
        w.Tokens(s.Committed.AsSpan(last.Committed.Length));
        return w.ToArray();
    }

    private static void Counters(ref VarintWriter w, DraftSessionState s)
    {
        w.Long(s.Round);
        w.Int(s.Epoch);
        w.Long(s.Rounds);
        w.Long(s.Drafted);
        w.Long(s.Accepted);
        w.Long(s.ProposalsExamined);
        w.Long(s.ProposalsAccepted);
        w.Long(s.FollowUps);
    }

    private static bool TryApply(ReadOnlySpan<byte> payload, ref DraftSessionState? state, ref string? fingerprint)
    {
        var r = new VarintReader(payload);
        if (!r.Byte(out var kind))
        {
            return false;
        }

        if (kind == SnapshotKind)
        {
            if (!r.String(out var fp) || !r.String(out var id) || !r.Int(out var promptLength)
                || !ReadCounters(ref r, new DraftSessionState { SessionId = id, PromptLength = promptLength }, out var s)
                || !r.Tokens(out var tokens) || !r.AtEnd)
            {
                return false;
            }

            fingerprint = fp;
            state = s with { Committed = tokens };
            return true;
        }

        if (kind == RoundKind && state is not null)
        {
            if (!ReadCounters(ref r, state, out var s) || !r.Tokens(out var appended) || !r.AtEnd)
            {
                return false;
            }

            state = s with { Committed = [.. state.Committed, .. appended] };
            return true;
        }

        return false;
    }

    private static bool ReadCounters(ref VarintReader r, DraftSessionState previous, out DraftSessionState state)
    {
        state = previous;
        if (!r.Long(out var round) || !r.Int(out var epoch) || !r.Long(out var rounds) || !r.Long(out var drafted) || !r.Long(out var accepted)
            || !r.Long(out var examined) || !r.Long(out var proposalsAccepted) || !r.Long(out var followUps))
        {
            return false;
        }

        state = previous with
        {
            Round = round, Epoch = epoch, Rounds = rounds, Drafted = drafted, Accepted = accepted,
            ProposalsExamined = examined, ProposalsAccepted = proposalsAccepted, FollowUps = followUps,
        };
        return true;
    }

    private ref struct VarintWriter(int capacity)
    {
        private byte[] _buffer = new byte[Math.Max(16, capacity)];
        private int _length;

        public void Byte(byte b)
        {
            Ensure(1);
            _buffer[_length++] = b;
        }

        public void Long(long value)
        {
            Ensure(10);
            var v = (ulong)((value << 1) ^ (value >> 63));
            while (v >= 0x80)
            {
                _buffer[_length++] = (byte)(v | 0x80);
                v >>= 7;
            }

            _buffer[_length++] = (byte)v;
        }

        public void Int(int value) => Long(value);

        public void String(string value)
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            Int(bytes.Length);
            Ensure(bytes.Length);
            bytes.CopyTo(_buffer, _length);
            _length += bytes.Length;
        }

        public void Tokens(ReadOnlySpan<int> tokens)
        {
            Int(tokens.Length);
            foreach (var t in tokens)
            {
                Int(t);
            }
        }

        public readonly byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

        private void Ensure(int more)
        {
            if (_length + more > _buffer.Length)
            {
                Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + more));
            }
        }
    }

    private ref struct VarintReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public readonly bool AtEnd => _pos == _data.Length;

        public bool Byte(out byte b)
        {
            b = 0;
            if (_pos >= _data.Length)
            {
                return false;
            }

            b = _data[_pos++];
            return true;
        }

        public bool Long(out long value)
        {
            value = 0;
            ulong v = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length)
                {
                    return false;
                }

                var b = _data[_pos++];
                v |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    value = (long)(v >> 1) ^ -(long)(v & 1);
                    return true;
                }
            }

            return false;
        }

        public bool Int(out int value)
        {
            value = 0;
            if (!Long(out var v) || v is < int.MinValue or > int.MaxValue)
            {
                return false;
            }

            value = (int)v;
            return true;
        }

        public bool String(out string value)
        {
            value = "";
            if (!Int(out var length) || length < 0 || length > _data.Length - _pos)
            {
                return false;
            }

            value = Encoding.UTF8.GetString(_data.Slice(_pos, length));
            _pos += length;
            return true;
        }

        public bool Tokens(out int[] tokens)
        {
            tokens = [];
            if (!Int(out var count) || count < 0 || count > _data.Length - _pos)
            {
                return false;
            }

            tokens = new int[count];
            for (var i = 0; i < count; i++)
            {
                if (!Int(out tokens[i]))
                {
                    return false;
                }
            }

            return true;
        }
    }
}

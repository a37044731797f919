using System.Buffers.Binary;
using System.Text;

namespace IotDsd.Fuzz;

/// <summary>
/// Byte-level mutations for a deterministic, in-process fuzzer: bit flips, interesting bytes and integers (big- and
/// little-endian, as MessagePack and the fp32 rows use them), inserted, deleted and duplicated spans, splices with
/// other corpus entries, and truncation. Every choice comes from one seeded <see cref="Random"/>.
/// </summary>
public sealed class Mutator(int seed, int maxLength = 64 * 1024)
{
    private static readonly byte[] InterestingBytes =
        [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD2, 0xD3, 0xD9,
         0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x93, 0x9F, 0xA0, 0xBF, 0xE0, (byte)'"', (byte)'{', (byte)'}', (byte)'[',
         (byte)']', (byte)',', (byte)':', (byte)'\\', (byte)'/', (byte)'.', (byte)'0', (byte)'-', (byte)'e', (byte)'n'];

    private static readonly long[] InterestingInts =
        [0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 65, 127, 128, 255, 256, 32767, 32768, 65535, 65536, int.MaxValue, int.MinValue,
         uint.MaxValue, long.MaxValue, long.MinValue, 0x7FC00000 /* NaN */, 0x7F800000 /* +inf */, 0x3F800000 /* 1.0f */];

    private static readonly string[] Tokens =
        ["null", "true", "false", "0", "-1", "1e400", "\"\"", "{}", "[]", "\"files\":", "\"sha256\":", "\"kind\":", "\u0000", "\\u0000",
         "../", "/", "\"model\":null", ":null", "\"\\ud800\"", "9999999999999999999999", "NaN", "\n"];

    private readonly Random _random = new(seed);

    public Random Random => _random;

    /// <summary>One to four stacked mutations of <paramref name="input"/>, spliced with <paramref name="other"/> sometimes.</summary>
    public byte[] Mutate(byte[] input, byte[] other)
    {
        var data = new List<byte>(input);
        var count = 1 + _random.Next(4);
        for (var i = 0; i < count; i++)
        {
            MutateOnce(data, other);
        }

        if (data.Count > maxLength)
        {
            data.RemoveRange(maxLength, data.Count - maxLength);
        }

        return [.. data];
    }

    private void MutateOnce(List<byte> data, byte[] other)
    {
        var n = data.Count;
        switch (_random.Next(n == 0 ? 1 : 12))
        {
            case 0:
                data.Insert(_random.Next(n + 1), Pick());
                break;
            case 1:
                var bit = _random.Next(n * 8);
                data[bit / 8] ^= (byte)(1 << (bit % 8));
                break;
            case 2:
                data[_random.Next(n)] = Pick();
                break;
            case 3:
                data[_random.Next(n)] = (byte)_random.Next(256);
                break;
            case 4:
                var at = _random.Next(n);
                data.RemoveRange(at, Math.Min(n - at, 1 + _random.Next(Math.Min(16, n))));
                break;
            case 5:
                var from = _random.Next(n);
                var len = Math.Min(n - from, 1 + _random.Next(32));
                data.InsertRange(_random.Next(n + 1), data.GetRange(from, len));
                break;
            case 6:
                WriteInt(data);
                break;
            case 7:
                var keep = _random.Next(n);
                data.RemoveRange(keep, n - keep);
                break;
            case 8:
                if (other.Length > 0)
                {
                    var cut = _random.Next(n);
                    var start = _random.Next(other.Length);
                    data.RemoveRange(cut, n - cut);
                    data.AddRange(other.AsSpan(start).ToArray());
                }

                break;
            case 9:
                // Arithmetic on one byte: lengths and counts off by a little.
                var i = _random.Next(n);
                data[i] = (byte)(data[i] + _random.Next(-4, 5));
                break;
            case 10:
                // Tokens that matter to JSON and paths, where a byte at a time rarely gets.
                var token = Encoding.UTF8.GetBytes(Tokens[_random.Next(Tokens.Length)]);
                data.InsertRange(_random.Next(n + 1), token);
                break;
            default:
                var repeat = data[_random.Next(n)];
                data.InsertRange(_random.Next(n + 1), Enumerable.Repeat(repeat, 1 + _random.Next(64)));
                break;
        }
    }

    private byte Pick() => InterestingBytes[_random.Next(InterestingBytes.Length)];

    private void WriteInt(List<byte> data)
    {
        var value = InterestingInts[_random.Next(InterestingInts.Length)];
        var width = new[] { 1, 2, 4, 8 }[_random.Next(4)];
        Span<byte> bytes = stackalloc byte[8];
        if (_random.Next(2) == 0)
        {
            BinaryPrimitives.WriteInt64BigEndian(bytes, value);
            bytes = bytes[(8 - width)..];
        }
        else
        {
            BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
            bytes = bytes[..width];
        }

        var at = _random.Next(data.Count + 1);
        for (var i = 0; i < bytes.Length; i++)
        {
            if (at + i < data.Count)
            {
                data[at + i] = bytes[i];
            }
            else
            {
                data.Add(bytes[i]);
            }
        }
    }
}

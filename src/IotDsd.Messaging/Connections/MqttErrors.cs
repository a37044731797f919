using IotDsd.Contracts.Messages;

namespace IotDsd.Messaging.Connections;

/// <summary>Connecting to the broker failed; the message says how and where.</summary>
public sealed class MqttConnectionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A publish failed or timed out.</summary>
public sealed class MqttPublishException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Thread-safe counts by error code.</summary>
public sealed class ErrorCounters
{
    private readonly long[] _counts = new long[256];

    public void Increment(ErrorCode code) => Interlocked.Increment(ref _counts[(byte)code]);

    public long this[ErrorCode code] => Interlocked.Read(ref _counts[(byte)code]);

    public long Total
    {
        get
        {
            long sum = 0;
            for (var i = 0; i < _counts.Length; i++)
            {
                sum += Interlocked.Read(ref _counts[i]);
            }

            return sum;
        }
    }

    /// <summary>Non-zero counts by name.</summary>
    public IReadOnlyDictionary<string, long> Snapshot()
    {
        var result = new Dictionary<string, long>();
        foreach (var code in Enum.GetValues<ErrorCode>())
        {
            if (this[code] > 0)
            {
                result[code.ToString()] = this[code];
            }
        }

        return result;
    }
}

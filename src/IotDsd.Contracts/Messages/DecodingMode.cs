namespace IotDsd.Contracts.Messages;

/// <summary>How a round's verification is split between device and verifier (docs/protocol.md §3). All are lossless.</summary>
public enum DecodingMode : byte
{
    /// <summary>Temperature 0: token ids up; accepted count and the target's argmax down.</summary>
    Greedy = 0,

    /// <summary>Ids and full draft distributions up; accepted count and one token down.</summary>
    Dsd = 1,

    /// <summary>Ids and one draft probability each up; on rejection the full target row down, the device resamples.</summary>
    Dssd = 2,

    /// <summary>As <see cref="Dssd"/> up; on rejection <c>m</c> proposals drawn from the target row down, the device accepts one.</summary>
    Rsr = 3,
}

/// <summary>Parsing and naming of <see cref="DecodingMode"/> as users write it.</summary>
public static class DecodingModes
{
    /// <summary>The lower-case names: greedy, dsd, dssd, rsr.</summary>
    public static string Name(this DecodingMode mode) => mode switch
    {
        DecodingMode.Greedy => "greedy",
        DecodingMode.Dsd => "dsd",
        DecodingMode.Dssd => "dssd",
        DecodingMode.Rsr => "rsr",
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown decoding mode"),
    };

    /// <summary>Parses a mode name; returns false for anything else.</summary>
    public static bool TryParse(string? text, out DecodingMode mode)
    {
        foreach (var m in Enum.GetValues<DecodingMode>())
        {
            if (string.Equals(m.Name(), text, StringComparison.OrdinalIgnoreCase))
            {
                mode = m;
                return true;
            }
        }

        mode = default;
        return false;
    }
}

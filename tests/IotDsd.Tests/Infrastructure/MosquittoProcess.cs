global using IotdsdProcess = IotDsd.Testbed.Faults.IotdsdProcess;
using IotDsd.Testbed.Faults;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// A real Mosquitto started as a child process on a free loopback port (<see cref="MosquittoChild"/>). Where the
/// binary is missing (or <c>IOTDSD_MOSQUITTO</c> names one that does not exist), <see cref="TryStart"/> skips the
/// test with the reason, so tests that use it must be <c>[SkippableFact]</c> or <c>[SkippableTheory]</c> — unless
/// IOTDSD_REQUIRE_MOSQUITTO=1 (as in CI), in which case it fails the test.
/// </summary>
public static class MosquittoProcess
{
    public static string? Binary => MosquittoChild.Binary;

    public static bool Required => Environment.GetEnvironmentVariable("IOTDSD_REQUIRE_MOSQUITTO") == "1";

    /// <summary>Why a Mosquitto test cannot run here.</summary>
    public static string MissingReason => Environment.GetEnvironmentVariable("IOTDSD_MOSQUITTO") is { Length: > 0 } chosen
        ? $"mosquitto not found at IOTDSD_MOSQUITTO={chosen}"
        : "mosquitto is not installed (apt-get install mosquitto)";

    /// <summary>Fails where Mosquitto is required (CI), else skips the test with the reason.</summary>
    public static void SkipIfMissing()
    {
        if (Binary is null)
        {
            Assert.False(Required, $"IOTDSD_REQUIRE_MOSQUITTO=1 but {MissingReason}");
            throw new SkipException($"{MissingReason}; IOTDSD_REQUIRE_MOSQUITTO=1 makes this a failure");
        }
    }

    /// <summary>Without persistence, with <paramref name="extraConfig"/> appended; skips (or fails, where required) without Mosquitto.</summary>
    public static Task<MosquittoChild> TryStart(string extraConfig = "") => TryStart(persistence: false, extraConfig);

    internal static async Task<MosquittoChild> TryStart(bool persistence, string extraConfig = "")
    {
        SkipIfMissing();
        return await MosquittoChild.StartAsync(persistence, extraConfig);
    }
}

/// <summary>Mosquitto with persistence on, which can be stopped and started again with the same store.</summary>
public static class RestartableMosquitto
{
    public static Task<MosquittoChild> TryStart() => MosquittoProcess.TryStart(persistence: true);
}

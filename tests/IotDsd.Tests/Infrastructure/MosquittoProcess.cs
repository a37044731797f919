global using IotdsdProcess = IotDsd.Cli.Faults.IotdsdProcess;
using IotDsd.Cli.Faults;

namespace IotDsd.Tests.Infrastructure;

/// <summary>
/// A real Mosquitto started as a child process on a free loopback port (<see cref="MosquittoChild"/>). Where the
/// binary is missing, <see cref="TryStart"/> returns null — unless IOTDSD_REQUIRE_MOSQUITTO=1 (as in CI), in which
/// case it fails the test.
/// </summary>
public static class MosquittoProcess
{
    public static string? Binary => MosquittoChild.Binary;

    public static bool Required => Environment.GetEnvironmentVariable("IOTDSD_REQUIRE_MOSQUITTO") == "1";

    /// <summary>Without persistence, with <paramref name="extraConfig"/> appended.</summary>
    public static Task<MosquittoChild?> TryStart(string extraConfig = "") => TryStart(persistence: false, extraConfig);

    internal static async Task<MosquittoChild?> TryStart(bool persistence, string extraConfig = "")
    {
        if (Binary is null)
        {
            Assert.False(Required, "IOTDSD_REQUIRE_MOSQUITTO=1 but no mosquitto binary was found (apt-get install mosquitto)");
            return null;
        }

        return await MosquittoChild.StartAsync(persistence, extraConfig);
    }
}

/// <summary>Mosquitto with persistence on, which can be stopped and started again with the same store.</summary>
public static class RestartableMosquitto
{
    public static Task<MosquittoChild?> TryStart() => MosquittoProcess.TryStart(persistence: true);
}

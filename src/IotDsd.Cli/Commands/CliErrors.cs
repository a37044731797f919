using IotDsd.Inference.Models;
using IotDsd.Edge.Drafting;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary>Exceptions whose message is already a complete, one-line explanation for the user.</summary>
internal static class CliErrors
{
    public static bool IsUserFacing(Exception ex) => ex is CliError or IotDsd.Hosting.ConfigurationException or IotDsd.Inference.Models.ModelPairException or TestbedException or GenerationException or MqttConnectionException or MqttPublishException
        or ArgumentException || ex.GetType().Name is "ModelLoadException" or "ExecutionProviderException";

    /// <summary>Runs <paramref name="start"/>, which binds a listening socket; a port in use (or an address that is not
    /// this machine's) becomes a one-line error naming <paramref name="option"/>.</summary>
    public static async Task<T> ListeningAsync<T>(string option, string endpoint, Func<Task<T>> start)
    {
        try
        {
            return await start().ConfigureAwait(false);
        }
        catch (InvalidOperationException ex) when (ex.InnerException is System.Net.Sockets.SocketException socket)
        {
            var hint = socket.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse
                ? $"another program holds it; stop it or choose another {option}"
                : $"check the address and {option}";
            throw new CliError($"{option}: cannot listen on {endpoint}: {socket.Message} ({hint})");
        }
    }
}

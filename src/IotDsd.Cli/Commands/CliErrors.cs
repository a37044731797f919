using IotDsd.Edge.Drafting;
using IotDsd.Messaging.Connections;

namespace IotDsd.Cli.Commands;

/// <summary>Exceptions whose message is already a complete, one-line explanation for the user.</summary>
internal static class CliErrors
{
    public static bool IsUserFacing(Exception ex) => ex is CliError or GenerationException or MqttConnectionException or MqttPublishException
        or ArgumentException || ex.GetType().Name == "ModelLoadException";
}

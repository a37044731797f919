using System.Globalization;
using IotDsd.Contracts.Topics;
using IotDsd.Messaging.Connections;
using Microsoft.Extensions.Logging;

namespace IotDsd.Messaging.Diagnostics;

/// <summary>
/// A field engineer's view of the fleet: subscribes to every status and metrics topic (retained messages arrive at
/// once) and sends diagnostic commands as MQTT 5 requests on a reply topic of its own.
/// </summary>
public sealed class DiagnosticsClient : IAsyncDisposable
{
    private readonly MqttConnection _connection;
    private readonly MqttRequester _requester;
    private readonly Task _pump;

    private DiagnosticsClient(MqttConnection connection, MqttRequester requester, string replies, ILogger logger)
    {
        Fleet = new FleetView(logger);
        _connection = connection;
        _requester = requester;
        _pump = Task.Run(() => PumpAsync(replies));
    }

    public FleetView Fleet { get; }

    public static Task<DiagnosticsClient> ConnectAsync(BrokerAddress broker, string? username, string? password, ILogger logger, CancellationToken ct) =>
        ConnectAsync(broker, username, password, null, logger, ct);

    /// <summary>Connects as an operator: <paramref name="tls"/> (null for plain TCP) and the credentials the broker's ACL
    /// knows (a user name and password, or the client certificate in <paramref name="tls"/>).</summary>
    public static async Task<DiagnosticsClient> ConnectAsync(BrokerAddress broker, string? username, string? password, MqttTlsSettings? tls, ILogger logger, CancellationToken ct)
    {
        var clientId = "iotdsd-diag-" + Random.Shared.NextInt64().ToString("x16", CultureInfo.InvariantCulture);
        var replies = TopicScheme.DiagnosticReplies(clientId);
        var connection = new MqttConnection(
            new MqttSettings { Broker = broker, ClientId = clientId, Username = username, Password = password, Tls = tls, BufferBytes = 256 * 1024, MaxPayloadBytes = 64 * 1024 },
            _ => false,
            logger);
        try
        {
            await connection.ConnectAsync([.. TopicScheme.FleetFilters, replies], ct).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new DiagnosticsClient(connection, new MqttRequester(connection, replies), replies, logger);
    }

    private async Task PumpAsync(string replies)
    {
        await foreach (var message in _connection.Inbound.ReadAllAsync().ConfigureAwait(false))
        {
            if (message.Topic == replies)
            {
                _requester.TryComplete(message);
            }
            else
            {
                Fleet.Apply(message.Topic, message.Raw, message.PayloadBytes);
            }
        }
    }

    /// <summary>Sends <paramref name="command"/> to a device or verifier; null if it did not answer in time.</summary>
    public async Task<DiagnosticReply?> SendAsync(string role, string id, string command, TimeSpan timeout, CancellationToken ct)
    {
        if (!TopicScheme.IsValidId(id))
        {
            throw new ArgumentException($"'{id}' is not a valid id: 1-64 characters of A-Z a-z 0-9 _ . -");
        }

        var topic = role == "verifier" ? TopicScheme.VerifierCommands(id) : TopicScheme.DeviceCommands(id);
        var reply = await _requester.RequestRawAsync(topic, new DiagnosticRequest { Command = command }.ToJson(), timeout, ct).ConfigureAwait(false);
        return reply is null ? null : DiagnosticReply.TryParse(reply.Raw);
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync().ConfigureAwait(false);
        await _pump.ConfigureAwait(false);
    }
}

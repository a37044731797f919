using System.CommandLine;
using System.Text.Json;
using IotDsd.Messaging.Connections;
using IotDsd.Messaging.Diagnostics;

namespace IotDsd.Cli.Commands;

/// <summary>
/// <c>iotdsd diag</c>: field diagnostics over MQTT. Without a subcommand, a live fleet table from the retained
/// status and metrics topics (<c>--json</c> or <c>--once</c> for a one-shot); <c>ping</c>, <c>config</c> and
/// <c>rebirth</c> send a command to one device or verifier and print its reply. It connects as the roles do (TLS,
/// a client certificate or a user name and password), as an identity the broker's ACL lets read every status and
/// metrics topic and send commands: the operator of <c>broker/acl</c>.
/// </summary>
internal static class DiagCommand
{
    private sealed class Connect
    {
        public Option<string> Broker { get; } = new("--broker") { Description = "MQTT 5 broker as HOST:PORT.", Required = true, Recursive = true };
        public Option<string?> Username { get; } = new("--username") { Description = "MQTT user name (the operator identity of the broker's ACL).", Recursive = true };
        public Option<string?> Password { get; } = new("--password") { Description = "MQTT password (prefer --password-file or IOTDSD_MQTT_PASSWORD).", Recursive = true };
        public Option<string?> PasswordFile { get; } = new("--password-file") { Description = "File whose first line is the MQTT password.", Recursive = true };
        public TransportOptions Transport { get; } = new();
        public Option<int> Wait { get; } = new("--wait-ms") { Description = "One-shot forms: how long to collect retained messages, or wait for a reply.", DefaultValueFactory = _ => 1500, Recursive = true };

        public void AddTo(Command command)
        {
            command.Add(Broker);
            command.Add(Username);
            command.Add(Password);
            command.Add(PasswordFile);
            Transport.AddTo(command, recursive: true);
            command.Add(Wait);
        }

        public Task<DiagnosticsClient> ConnectAsync(ParseResult result, CancellationToken ct)
        {
            var address = BrokerAddress.TryParse(result.GetValue(Broker), out var error) ?? throw new CliError("--broker: " + error);
            var tls = Transport.Parse(result, address);
            var password = result.GetValue(Password);
            if (password is null && result.GetValue(PasswordFile) is { } file)
            {
                try
                {
                    password = File.ReadLines(file).FirstOrDefault()?.TrimEnd() ?? "";
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new CliError($"--password-file '{file}' cannot be read: {ex.Message.TrimEnd('.')}");
                }
            }

            var username = result.GetValue(Username);
            if (password is not null && username is null)
            {
                throw new CliError($"{(result.GetValue(Password) is null ? "--password-file" : "--password")} needs --username");
            }

            // IOTDSD_MQTT_PASSWORD is the password of --username; an operator on a client certificate gives no user name.
            password ??= username is null ? null : Environment.GetEnvironmentVariable("IOTDSD_MQTT_PASSWORD");
            return DiagnosticsClient.ConnectAsync(address, username, string.IsNullOrEmpty(password) ? null : password, tls, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, ct);
        }
    }

    public static Command Create()
    {
        var connect = new Connect();
        var json = new Option<bool>("--json") { Description = "Print the fleet once as JSON and exit." };
        var once = new Option<bool>("--once") { Description = "Print the fleet table once and exit." };
        var refresh = new Option<int>("--refresh-ms") { Description = "Live table refresh period.", DefaultValueFactory = _ => 1000 };
        var command = new Command("diag", "Field diagnostics over MQTT: live fleet table, or a command to one device or verifier.")
        {
            json, once, refresh,
        };
        connect.AddTo(command);
        foreach (var name in DiagnosticRequest.Commands)
        {
            command.Add(CreateRequest(name, connect));
        }

        command.SetAction(async (result, ct) =>
        {
            var waitMs = Positive(result.GetValue(connect.Wait), "--wait-ms");
            var refreshMs = Positive(result.GetValue(refresh), "--refresh-ms");
            await using var client = await connect.ConnectAsync(result, ct).ConfigureAwait(false);
            if (result.GetValue(json) || result.GetValue(once))
            {
                await Task.Delay(waitMs, ct).ConfigureAwait(false);
                var rows = client.Fleet.Rows();
                Console.Out.Write(result.GetValue(json) ? FleetTable.Json(rows) + Environment.NewLine : FleetTable.Render(rows, ProcessClock.NowMs(TimeProvider.System)));
                if (client.Fleet.Rejects.Total > 0)
                {
                    // Not part of the table (stdout stays parseable), but never silent.
                    var reasons = string.Join(", ", client.Fleet.Rejects.Counts.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"));
                    Console.Error.WriteLine($"iotdsd diag: ignored {client.Fleet.Rejects.Total} status messages that are not a valid status of the peer their topic names ({reasons})");
                }

                return 0;
            }

            while (!ct.IsCancellationRequested)
            {
                var table = FleetTable.Render(client.Fleet.Rows(), ProcessClock.NowMs(TimeProvider.System));
                Console.Out.Write(Console.IsOutputRedirected ? table + Environment.NewLine : "\u001b[H\u001b[2J" + table);
                await Task.Delay(refreshMs, ct).ConfigureAwait(false);
            }

            return 0;
        });
        return command;
    }

    private static Command CreateRequest(string name, Connect connect)
    {
        var id = new Argument<string>("id") { Description = "Device id, or verifier id with --verifier." };
        var verifier = new Option<bool>("--verifier") { Description = "Address a verifier instead of a device." };
        var what = name switch
        {
            "ping" => "Ping a device or verifier: is it alive, is its link up, which version.",
            "config" => "Dump the effective configuration of a device or verifier (secrets redacted).",
            _ => "Ask a device or verifier to re-publish its retained birth message.",
        };
        var command = new Command(name, what) { id, verifier };
        command.SetAction(async (result, ct) =>
        {
            var timeout = TimeSpan.FromMilliseconds(Positive(result.GetValue(connect.Wait), "--wait-ms"));
            await using var client = await connect.ConnectAsync(result, ct).ConfigureAwait(false);
            var role = result.GetValue(verifier) ? "verifier" : "device";
            var target = result.GetValue(id)!;
            var started = TimeProvider.System.GetTimestamp();
            var reply = await client.SendAsync(role, target, name, timeout, ct).ConfigureAwait(false)
                ?? throw new CliError($"{role} {target} did not answer '{name}' within {timeout.TotalMilliseconds:0} ms (is it online? iotdsd diag --once lists the fleet)");
            var elapsed = TimeProvider.System.GetElapsedTime(started);
            Console.Out.WriteLine(JsonSerializer.Serialize(reply, Indented));
            if (name == "ping")
            {
                Console.Error.WriteLine($"reply from {role} {target} in {elapsed.TotalMilliseconds:0.0} ms");
            }

            return reply.Ok ? 0 : 1;
        });
        return command;
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static int Positive(int value, string flag) => value > 0 ? value : throw new CliError($"{flag} must be positive, got {value}");
}

using System.CommandLine;
using IotDsd.Cli.Commands;

var common = new CommonOptions();
var root = new RootCommand("iotdsd: lossless distributed speculative decoding over MQTT 5.")
{
    DemoCommand.Create(common),
    GenerateCommand.Create(common),
    VerifierCommand.Create(),
    EdgeCommand.Create(common),
    DeviceCommand.Create(),
    DiagCommand.Create(),
    BrokerCommand.Create(),
    BenchCommand.Create(common),
    ModelsCommand.Create(),
    SimCommand.Create(),
    ServerCommand.Create(common),
    LoadgenCommand.Create(common),
    LinkCommand.Create(),
    NetnsCommand.Create(),
};

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    var command = parsed.CommandResult.Command == root ? "iotdsd" : $"iotdsd {parsed.CommandResult.Command.Name}";
    Console.Error.WriteLine($"{command}: {parsed.Errors[0].Message} (see {command} --help)");
    return 2;
}

try
{
    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
}
catch (Exception ex) when (CliErrors.IsUserFacing(ex))
{
    Console.Error.WriteLine($"iotdsd {parsed.CommandResult.Command.Name}: {ex.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    return 130;
}

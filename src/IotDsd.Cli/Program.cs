using System.CommandLine;
using IotDsd.Cli.Commands;

var root = CliRoot.Create();
var parsed = root.Parse(args);
var command = CliRoot.PathOf(parsed);
if (parsed.Errors.Count > 0)
{
    Console.Error.WriteLine($"{command}: {parsed.Errors[0].Message} (see {command} --help)");
    return 2;
}

try
{
    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
}
catch (Exception ex) when (CliErrors.IsUserFacing(ex))
{
    Console.Error.WriteLine($"{command}: {ex.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    return 130;
}

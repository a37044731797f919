using System.CommandLine;

namespace IotDsd.Cli.Commands;

/// <summary>The command tree of <c>iotdsd</c>, and how its errors are prefixed.</summary>
internal static class CliRoot
{
    public static RootCommand Create()
    {
        var common = new CommonOptions();
        return new RootCommand("iotdsd: lossless distributed speculative decoding over MQTT 5.")
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
    }

    /// <summary>The full command line name of the command that was parsed: <c>iotdsd diag ping</c>, not <c>ping</c>.</summary>
    public static string PathOf(ParseResult parsed)
    {
        var names = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            if (result.Command is not RootCommand)
            {
                names.Add(result.Command.Name);
            }
        }

        names.Add("iotdsd");
        names.Reverse();
        return string.Join(' ', names);
    }
}

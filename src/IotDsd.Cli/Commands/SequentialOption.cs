using System.CommandLine;

namespace IotDsd.Cli.Commands;

/// <summary>The <c>--sequential</c> flag (and <c>Edge:Sequential</c> setting): the baseline shape, no adaptation.</summary>
internal static class SequentialOption
{
    public static Option<bool> Create() => new("--sequential")
    {
        Description = "One chain of --gamma drafts a round, one round in flight, no adaptation (the baseline of every comparison). Without it, greedy rounds take the shape controller's choice (depth from --gamma up to 16); sampling modes keep --gamma unless --adapt-in-sampling.",
    };
}

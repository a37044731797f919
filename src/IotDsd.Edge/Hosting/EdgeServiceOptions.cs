using IotDsd.Core.Sessions;

namespace IotDsd.Edge.Hosting;

/// <summary>Settings of the long-running device service around one draft worker.</summary>
public sealed record EdgeServiceOptions
{
    /// <summary>Where the service keeps its state (systemd's <c>StateDirectory=</c>): completions and session state.</summary>
    public required string StateDirectory { get; init; }

    /// <summary>Prompts to generate from, one per line, taken in turn; empty: the worker stays connected and idle.</summary>
    public IReadOnlyList<string> Prompts { get; init; } = [];

    /// <summary>Pause between two generations.</summary>
    public TimeSpan JobInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Generations before the service idles; 0 for no limit.</summary>
    public int MaxJobs { get; init; }

    /// <summary>Settings of every generation (end-of-sequence ids included); the session id is made per job.</summary>
    public required SessionSettings Generation { get; init; }

    /// <summary>The model's BOS, put in front of every prompt where the model expects it; null: none.</summary>
    public int? Bos { get; init; }

    /// <summary>File that receives one JSON line per completed generation.</summary>
    public string CompletionsFile => Path.Combine(StateDirectory, "completions.jsonl");
}

namespace IotDsd.Cli.Commands;

/// <summary>A user error: printed as one line, exit code 2.</summary>
public sealed class CliError(string message) : Exception(message);

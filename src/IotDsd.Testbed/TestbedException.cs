namespace IotDsd.Testbed;

/// <summary>A bad plan or a failed measurement whose message is already one complete line for the user.</summary>
public sealed class TestbedException(string message) : Exception(message);

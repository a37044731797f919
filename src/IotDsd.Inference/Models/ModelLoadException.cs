namespace IotDsd.Inference.Models;

/// <summary>A model directory could not be used; the message names the path and how to fix it.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string path, string message, Exception? inner = null)
        : base(message, inner)
    {
        Path = path;
    }

    /// <summary>The directory or file at fault.</summary>
    public string Path { get; }
}

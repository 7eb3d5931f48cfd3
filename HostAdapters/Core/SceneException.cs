namespace FarmPlugins.Hosts;

/// <summary>A scene that cannot be rendered as it is: a missing dependency, a reference that cannot be resolved.</summary>
public class SceneException : Exception
{
    /// <summary>Makes the exception; the message names the file and the line when known.</summary>
    /// <param name="reason">What is wrong.</param>
    /// <param name="file">The scene file (or include file) that holds the reference.</param>
    /// <param name="line">The 1-based line of the reference, when known.</param>
    /// <param name="innerException">The cause, if any.</param>
    public SceneException(string reason, string? file = null, int? line = null, Exception? innerException = null)
        : base(Format(reason, file, line), innerException)
    {
        Reason = reason;
        File = file;
        Line = line;
    }

    /// <summary>What is wrong, without the location.</summary>
    public string Reason { get; }

    /// <summary>The file that holds the bad reference.</summary>
    public string? File { get; }

    /// <summary>The 1-based line of the bad reference.</summary>
    public int? Line { get; }

    private static string Format(string reason, string? file, int? line) => (file, line) switch
    {
        (null, _) => reason,
        (_, null) => $"{file}: {reason}",
        _ => $"{file}:{line}: {reason}",
    };
}

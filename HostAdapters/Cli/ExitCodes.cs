namespace FarmPlugins.Cli;

/// <summary>The exit codes of every <c>farm</c> verb.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Success = 0;

    /// <summary>A job or a test failed, or a job was cancelled.</summary>
    public const int JobFailed = 1;

    /// <summary>A usage error: a bad option or value, a missing argument or file, a bad frame list or tiles.</summary>
    public const int Usage = 2;

    /// <summary>A plug-in or farm error: unknown plug-in or job, refused credentials, farm unreachable.</summary>
    public const int Farm = 3;

    /// <summary>Interrupted (Ctrl+C).</summary>
    public const int Interrupted = 130;
}

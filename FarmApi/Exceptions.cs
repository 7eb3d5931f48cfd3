namespace FarmApi;

/// <summary>The root of every error a farm plug-in reports.</summary>
public class FarmPluginException : Exception
{
    /// <summary>Makes the exception.</summary>
    /// <param name="message">What went wrong, for a person.</param>
    /// <param name="innerException">The cause, when there is one.</param>
    /// <param name="pluginName">The plug-in that reports it.</param>
    public FarmPluginException(string message, Exception? innerException = null, string? pluginName = null)
        : base(message, innerException)
    {
        PluginName = pluginName;
    }

    /// <summary>The plug-in that reports it, when known.</summary>
    public string? PluginName { get; }
}

/// <summary>No job has the id asked for.</summary>
public class JobNotFoundException : FarmPluginException
{
    /// <summary>Makes the exception; the message names the id.</summary>
    /// <param name="jobId">The id that was not found.</param>
    /// <param name="pluginName">The plug-in that reports it.</param>
    public JobNotFoundException(string jobId, string? pluginName = null)
        : base(pluginName is null ? $"Job '{jobId}' was not found." : $"Job '{jobId}' was not found on {pluginName}.", null, pluginName)
    {
        JobId = jobId;
    }

    /// <summary>The id that was not found.</summary>
    public string JobId { get; }
}

/// <summary>Credentials are missing or the farm refused them.</summary>
public class FarmAuthenticationException : FarmPluginException
{
    /// <summary>Makes the exception.</summary>
    /// <param name="message">What was refused; never the credential itself.</param>
    /// <param name="innerException">The cause, when there is one.</param>
    /// <param name="pluginName">The plug-in that reports it.</param>
    public FarmAuthenticationException(string message, Exception? innerException = null, string? pluginName = null)
        : base(message, innerException, pluginName)
    {
    }
}

/// <summary>The farm cannot be reached now; retrying later may help.</summary>
public class FarmUnavailableException : FarmPluginException
{
    /// <summary>Makes the exception.</summary>
    /// <param name="message">What could not be reached.</param>
    /// <param name="innerException">The cause, when there is one.</param>
    /// <param name="pluginName">The plug-in that reports it.</param>
    public FarmUnavailableException(string message, Exception? innerException = null, string? pluginName = null)
        : base(message, innerException, pluginName)
    {
    }
}

/// <summary>Credits, quota or limits are exhausted.</summary>
public class FarmQuotaException : FarmPluginException
{
    /// <summary>Makes the exception.</summary>
    /// <param name="message">Which limit was reached.</param>
    /// <param name="innerException">The cause, when there is one.</param>
    /// <param name="pluginName">The plug-in that reports it.</param>
    public FarmQuotaException(string message, Exception? innerException = null, string? pluginName = null)
        : base(message, innerException, pluginName)
    {
    }
}

/// <summary>An operation was called whose capability the plug-in does not have.</summary>
public class FarmCapabilityException : FarmPluginException
{
    /// <summary>Makes the exception; the message names the capability.</summary>
    /// <param name="capability">The missing capability.</param>
    /// <param name="operation">The operation that was called.</param>
    /// <param name="pluginName">The plug-in that lacks it.</param>
    public FarmCapabilityException(FarmCapabilities capability, string operation, string? pluginName = null)
        : base($"{pluginName ?? "The plug-in"} does not support {operation} (capability {capability}).", null, pluginName)
    {
        Capability = capability;
    }

    /// <summary>The missing capability.</summary>
    public FarmCapabilities Capability { get; }
}

/// <summary>A plug-in could not be loaded: not an assembly, a missing dependency, a throwing constructor, an incompatible API.</summary>
public class FarmPluginLoadException : FarmPluginException
{
    /// <summary>Makes the exception.</summary>
    /// <param name="path">The plug-in's assembly path.</param>
    /// <param name="reason">Why it cannot be loaded.</param>
    /// <param name="innerException">The cause, when there is one.</param>
    public FarmPluginLoadException(string path, string reason, Exception? innerException = null)
        : base($"Cannot load the plug-in at {path}: {reason}", innerException)
    {
        Path = path;
        Reason = reason;
    }

    /// <summary>The plug-in's assembly path.</summary>
    public string Path { get; }

    /// <summary>Why it cannot be loaded.</summary>
    public string Reason { get; }
}

using Microsoft.Extensions.Logging;

namespace FarmPlugins.LocalQueue;

// LocalQueue's messages: event ids 2000-2099.
internal static partial class Log
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "LocalQueue: started agent {AgentId} (pid {Pid})")]
    public static partial void AgentStarted(ILogger logger, string agentId, int pid);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Debug, Message = "LocalQueue: staged {Files} files ({Linked} already stored) into {Folder}")]
    public static partial void Staged(ILogger logger, int files, int linked, string folder);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "LocalQueue: stopped job {JobId}, killed {Groups} process groups")]
    public static partial void Stopped(ILogger logger, string jobId, int groups);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "LocalQueue: a staged file was not content-addressed ({File}): {Reason}")]
    public static partial void HashingSkipped(ILogger logger, string file, string reason);
}

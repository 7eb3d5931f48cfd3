
namespace ReferenceFarm.Server;

// ReferenceFarm server messages: event ids 5100-5199.
internal static partial class Log
{
    [LoggerMessage(EventId = 5100, Level = LogLevel.Information, Message = "ReferenceFarm server listening on {Url} (data {DataDirectory})")]
    public static partial void Listening(ILogger logger, string url, string dataDirectory);

    [LoggerMessage(EventId = 5101, Level = LogLevel.Information, Message = "Job {JobId} '{Name}' submitted by {Owner} with {TaskCount} tasks")]
    public static partial void JobSubmitted(ILogger logger, string jobId, string name, string owner, int taskCount);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Debug, Message = "Task {JobId}/{TaskId} leased to {Agent} (lease {Lease}, attempt {Attempt})")]
    public static partial void TaskLeased(ILogger logger, string jobId, string taskId, string agent, long lease, int attempt);

    [LoggerMessage(EventId = 5103, Level = LogLevel.Warning, Message = "Lease of task {JobId}/{TaskId} on {Agent} lapsed; task now {State}")]
    public static partial void LeaseLapsed(ILogger logger, string jobId, string taskId, string agent, string state);

    [LoggerMessage(EventId = 5104, Level = LogLevel.Warning, Message = "Rejected a stale report from {Agent} for {JobId}/{TaskId} (lease {Lease})")]
    public static partial void StaleReport(ILogger logger, string agent, string jobId, string taskId, long lease);

    [LoggerMessage(EventId = 5105, Level = LogLevel.Warning, Message = "Refused a {Method} call: {Reason}")]
    public static partial void Refused(ILogger logger, string method, string reason);

    [LoggerMessage(EventId = 5106, Level = LogLevel.Information, Message = "Server started with {Running} running tasks; each gets a {GraceMs} ms grace period")]
    public static partial void RestartGrace(ILogger logger, int running, long graceMs);

    [LoggerMessage(EventId = 5107, Level = LogLevel.Information, Message = "Job {JobId} {Command} by {Caller}")]
    public static partial void JobCommand(ILogger logger, string jobId, string command, string caller);

    [LoggerMessage(EventId = 5108, Level = LogLevel.Error, Message = "Lease check failed")]
    public static partial void ReaperFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5109, Level = LogLevel.Warning, Message = "The server could not run for {GapMs} ms; {Count} running leases get the restart grace")]
    public static partial void StallGrace(ILogger logger, long gapMs, int count);

    [LoggerMessage(EventId = 5110, Level = LogLevel.Information, Message = "Removed {Count} blobs no job refers to ({Bytes} bytes)")]
    public static partial void BlobsRemoved(ILogger logger, int count, long bytes);

    [LoggerMessage(EventId = 5111, Level = LogLevel.Error, Message = "Blob collection failed")]
    public static partial void BlobCollectionFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5112, Level = LogLevel.Error, Message = "Could not write to the log of job {JobId}")]
    public static partial void LogWriteFailed(ILogger logger, string jobId, Exception exception);
}

using Microsoft.Extensions.Logging;

namespace ReferenceFarm.Agent;

// ReferenceFarm agent messages: event ids 5200-5299.
internal static partial class Log
{
    [LoggerMessage(EventId = 5200, Level = LogLevel.Information, Message = "Agent {Name} serving {Server} with hosts {Hosts} ({Slots} slots, work {Work})")]
    public static partial void Started(ILogger logger, string name, string server, string hosts, int slots, string work);

    [LoggerMessage(EventId = 5201, Level = LogLevel.Debug, Message = "Running {JobId}/{TaskId} (attempt {Attempt}, lease {Lease})")]
    public static partial void Running(ILogger logger, string jobId, string taskId, int attempt, long lease);

    [LoggerMessage(EventId = 5202, Level = LogLevel.Debug, Message = "Reported {JobId}/{TaskId}: {Outcome}")]
    public static partial void Reported(ILogger logger, string jobId, string taskId, string outcome);

    [LoggerMessage(EventId = 5203, Level = LogLevel.Warning, Message = "Server unreachable ({Status}); retrying in {DelayMs} ms")]
    public static partial void Retrying(ILogger logger, string status, long delayMs);

    [LoggerMessage(EventId = 5204, Level = LogLevel.Warning, Message = "Report for {JobId}/{TaskId} rejected: {Reason}")]
    public static partial void Rejected(ILogger logger, string jobId, string taskId, string reason);

    [LoggerMessage(EventId = 5205, Level = LogLevel.Information, Message = "Stopping {JobId}/{TaskId}: {Reason}")]
    public static partial void Cancelling(ILogger logger, string jobId, string taskId, string reason);

    [LoggerMessage(EventId = 5206, Level = LogLevel.Information, Message = "Draining: waiting up to {GraceMs} ms for {Count} running tasks")]
    public static partial void Draining(ILogger logger, long graceMs, int count);

    [LoggerMessage(EventId = 5207, Level = LogLevel.Error, Message = "Task {JobId}/{TaskId} could not run")]
    public static partial void TaskError(ILogger logger, string jobId, string taskId, Exception exception);

    [LoggerMessage(EventId = 5208, Level = LogLevel.Error, Message = "Agent refused by the server: {Reason}")]
    public static partial void Refused(ILogger logger, string reason);

    [LoggerMessage(EventId = 5209, Level = LogLevel.Warning, Message = "An earlier run of this agent left {JobId}/{TaskId} (lease {Lease}) unfinished; its processes still ran: {Killed}; reporting it failed")]
    public static partial void Leftover(ILogger logger, string jobId, string taskId, long lease, bool killed);

    [LoggerMessage(EventId = 5210, Level = LogLevel.Error, Message = "Heartbeat failed")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5211, Level = LogLevel.Information, Message = "Handing back {JobId}/{TaskId} (lease {Lease}): leased ahead, it waited behind a long task")]
    public static partial void HandingBack(ILogger logger, string jobId, string taskId, long lease);
}

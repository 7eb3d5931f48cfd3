using Microsoft.Extensions.Logging;

namespace FarmApi;

// FarmApi's messages: event ids 1000-1099.
internal static partial class Log
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Debug, Message = "{Plugin}: {Operation} starting (render context {RenderContextId}, job {JobId})")]
    public static partial void OperationStarting(ILogger logger, string plugin, string operation, Guid? renderContextId, string? jobId);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "{Plugin}: {Operation} done in {ElapsedMilliseconds} ms")]
    public static partial void OperationCompleted(ILogger logger, string plugin, string operation, long elapsedMilliseconds);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "{Plugin}: {Operation} failed: {Error}")]
    public static partial void OperationFailed(ILogger logger, string plugin, string operation, string error);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "{Plugin}: {Operation} refused an invalid request: {Error}")]
    public static partial void RequestRefused(ILogger logger, string plugin, string operation, string error);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "{Plugin}: job {JobId} submitted for render context {RenderContextId} with {TaskCount} tasks")]
    public static partial void JobSubmitted(ILogger logger, string plugin, string jobId, Guid renderContextId, int taskCount);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Information, Message = "{Plugin}: initialized with capabilities {Capabilities}")]
    public static partial void Initialized(ILogger logger, string plugin, FarmCapabilities capabilities);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Warning, Message = "{Plugin}: {Operation} refused: capability {Capability} is not supported")]
    public static partial void CapabilityMissing(ILogger logger, string plugin, string operation, FarmCapabilities capability);
}

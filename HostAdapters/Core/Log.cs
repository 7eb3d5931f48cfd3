using Microsoft.Extensions.Logging;

namespace FarmPlugins.Hosts;

// Host messages: event ids 4000-4029 (POV-Ray 4030-4059, Blender 4060-4089, farm-tools 4090-4099).
internal static partial class Log
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Information, Message = "Planned {Scene} with {Host}: {FileCount} files, {FrameCount} frames")]
    public static partial void Planned(ILogger logger, string scene, string host, int fileCount, int frameCount);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Render context {RenderContextId}: temporary folder {Folder}")]
    public static partial void FolderCreated(ILogger logger, Guid renderContextId, string folder);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Render context {RenderContextId}: submitted job {JobId} with {TaskCount} tasks")]
    public static partial void Submitted(ILogger logger, Guid renderContextId, string jobId, int taskCount);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Job {JobId} ended {State}")]
    public static partial void Ended(ILogger logger, string jobId, FarmApi.JobState state);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "Job {JobId}: fetched {Count} outputs into {Folder}")]
    public static partial void Fetched(ILogger logger, string jobId, int count, string folder);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Debug, Message = "Job {JobId}: preview copy deleted from the farm")]
    public static partial void PreviewDeleted(ILogger logger, string jobId);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Warning, Message = "Job {JobId}: could not delete the preview copy from the farm: {Error}")]
    public static partial void PreviewDeleteFailed(ILogger logger, string jobId, string error);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Debug, Message = "Staged {Count} files for render context {RenderContextId}")]
    public static partial void Staged(ILogger logger, int count, Guid renderContextId);
}

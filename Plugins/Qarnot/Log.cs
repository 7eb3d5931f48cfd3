using Microsoft.Extensions.Logging;

namespace FarmPlugins.Qarnot;

// Qarnot's messages: event ids 6000-6099.
internal static partial class Log
{
    [LoggerMessage(EventId = 6000, Level = LogLevel.Information, Message = "Qarnot: connected to {ApiUrl}, storage {StorageUrl}")]
    public static partial void Connected(ILogger logger, string apiUrl, string storageUrl);

    [LoggerMessage(EventId = 6001, Level = LogLevel.Warning, Message = "Qarnot: {Method} {Path} answered {Status}; retry {Attempt} of {Retries} in {DelayMilliseconds} ms")]
    public static partial void Retrying(ILogger logger, string method, string path, int status, int attempt, int retries, long delayMilliseconds);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "Qarnot: staged {Files} files into {Folder}: {Uploaded} uploaded ({Bytes} bytes), {Skipped} already there")]
    public static partial void Staged(ILogger logger, int files, string folder, int uploaded, long bytes, int skipped);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Information, Message = "Qarnot: created task {Uuid} (part {Part}, instances {Ranges}) for job {JobId}")]
    public static partial void TaskCreated(ILogger logger, string uuid, int part, string ranges, string jobId);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Qarnot: a submit of part {Part} of job {JobId} had been accepted before its answer was lost: task {Uuid} reused")]
    public static partial void TaskFoundAfterRetry(ILogger logger, int part, string jobId, string uuid);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Information, Message = "Qarnot: aborted {Count} tasks of job {JobId}")]
    public static partial void Aborted(ILogger logger, int count, string jobId);

    [LoggerMessage(EventId = 6006, Level = LogLevel.Information, Message = "Qarnot: restarted {Count} instances of job {JobId}")]
    public static partial void Restarted(ILogger logger, int count, string jobId);

    [LoggerMessage(EventId = 6007, Level = LogLevel.Information, Message = "Qarnot: fetched {Written} outputs of job {JobId} ({Skipped} already identical)")]
    public static partial void Fetched(ILogger logger, int written, string jobId, int skipped);

    [LoggerMessage(EventId = 6008, Level = LogLevel.Warning, Message = "Qarnot: the API could not be reached at initialization ({Error}); will connect on first use")]
    public static partial void ConnectDeferred(ILogger logger, string error);
}

using Microsoft.Extensions.Logging;

namespace FarmPlugins.Slurm;

// Slurm's messages: event ids 7000-7099.
internal static partial class Log
{
    [LoggerMessage(EventId = 7000, Level = LogLevel.Information, Message = "Slurm: job {JobId} run {Run}: array {ArrayKey} submitted as Slurm job {SlurmJobId} ({Tasks} tasks)")]
    public static partial void ArraySubmitted(ILogger logger, string jobId, int run, string arrayKey, string slurmJobId, int tasks);

    [LoggerMessage(EventId = 7001, Level = LogLevel.Debug, Message = "Slurm: staged {Files} files ({Linked} already stored) into {Folder}")]
    public static partial void Staged(ILogger logger, int files, int linked, string folder);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Information, Message = "Slurm: stopped job {JobId}: cancelled Slurm jobs {SlurmJobIds}")]
    public static partial void Stopped(ILogger logger, string jobId, string slurmJobIds);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Information, Message = "Slurm: job {JobId}: cancelled Slurm jobs {SlurmJobIds} whose dependencies failed")]
    public static partial void DependentsCancelled(ILogger logger, string jobId, string slurmJobIds);

    [LoggerMessage(EventId = 7004, Level = LogLevel.Information, Message = "Slurm: job {JobId} restarted as run {Run} with {Tasks} tasks")]
    public static partial void Restarted(ILogger logger, string jobId, int run, int tasks);

    [LoggerMessage(EventId = 7005, Level = LogLevel.Warning, Message = "Slurm: job {JobId}: submission failed, cancelled the {Count} arrays already submitted: {Error}")]
    public static partial void SubmissionRolledBack(ILogger logger, string jobId, int count, string error);

    [LoggerMessage(EventId = 7006, Level = LogLevel.Information, Message = "Slurm: job {JobId} run {Run}: adopted array {ArrayKey} (Slurm job {SlurmJobId}) submitted before an interruption")]
    public static partial void ArrayAdopted(ILogger logger, string jobId, int run, string arrayKey, string slurmJobId);

    [LoggerMessage(EventId = 7007, Level = LogLevel.Debug, Message = "Slurm: job {JobId}: deleted {Folder}")]
    public static partial void Deleted(ILogger logger, string jobId, string folder);
}

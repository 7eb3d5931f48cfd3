using System.Collections.ObjectModel;

namespace FarmApi;

/// <summary>How a render's pixels come back: Katana's three render types.</summary>
public enum RenderType
{
    /// <summary>The farm writes image files, which the host fetches back.</summary>
    Disk,

    /// <summary>One frame whose image is handed back to the host and not kept on the farm.</summary>
    Preview,

    /// <summary>Interactive rendering that streams pixels back to the host.</summary>
    Live,
}

/// <summary>One render as the host sees it; every call of one submission carries it.</summary>
/// <param name="Id">A UUID v4 the host allocates per render.</param>
/// <param name="Type">The render type.</param>
/// <param name="Name">A name for people (the scene, the shot).</param>
public sealed record RenderContext(Guid Id, RenderType Type, string Name)
{
    /// <summary>Makes a render context with a fresh UUID v4.</summary>
    /// <param name="name">A name for people.</param>
    /// <param name="type">The render type; <see cref="RenderType.Disk"/> by default.</param>
    /// <returns>The new render context.</returns>
    public static RenderContext Create(string name, RenderType type = RenderType.Disk) => new(Guid.NewGuid(), type, name);
}

/// <summary>Where a host's software lives on the render nodes.</summary>
/// <param name="Host">The host name: <c>povray</c>, <c>blender</c>, <c>farm-tools</c>, <c>command</c>.</param>
/// <param name="Version">The version, for example <c>3.7.0.10</c>.</param>
/// <param name="Executable">The host's executable as the render node sees it.</param>
/// <param name="InstallRoot">The installation folder on the node, when there is one.</param>
/// <param name="Platform">The node's runtime identifier, for example <c>linux-x64</c>.</param>
public sealed record InstallationMetadata(
    string Host,
    string Version,
    string Executable,
    string? InstallRoot = null,
    string? Platform = null);

/// <summary>A file to stage: where it is on the workstation and where it goes in the job folder.</summary>
/// <param name="LocalPath">The file on the workstation.</param>
/// <param name="RelativePath">Its path relative to the job folder; never absolute, never with a <c>..</c> segment.</param>
public sealed record RenderFile(string LocalPath, string RelativePath);

/// <summary>One process a task runs: an executable and its arguments, never a shell string.</summary>
/// <param name="Executable">The executable, as the render node sees it (a name looked up on PATH, or a path).</param>
/// <param name="Arguments">The arguments, each passed as it is.</param>
public sealed record Command(string Executable, IReadOnlyList<string> Arguments)
{
    /// <summary>Makes a command from an executable and its arguments.</summary>
    /// <param name="executable">The executable.</param>
    /// <param name="arguments">The arguments.</param>
    /// <returns>The command.</returns>
    public static Command Of(string executable, params string[] arguments) => new(executable, arguments);
}

/// <summary>One unit of work: ordered commands run in the job folder.</summary>
/// <param name="Id">Unique within the job: <c>f0012</c>, <c>f0012-t2x1</c>, <c>merge-f0012</c>. Letters, digits, <c>.</c>, <c>_</c> and <c>-</c>.</param>
/// <param name="Commands">Run in order in the job folder; the first non-zero exit fails the task.</param>
/// <param name="DependsOn">Task ids that must complete first (tiles before their merge).</param>
/// <param name="Outputs">Files the task must leave behind, relative to the job folder: exit 0 with one missing is a failure.</param>
/// <param name="Host">The software the task needs on the node; matches <see cref="InstallationMetadata.Host"/>.</param>
/// <param name="Timeout">Per attempt; past it the task's process tree is killed and the attempt fails.</param>
/// <param name="Labels">For people and for farm-native mappings, for example <c>frame=12</c>, <c>tile=1x0</c>.</param>
public sealed record TaskSpec(
    string Id,
    IReadOnlyList<Command> Commands,
    IReadOnlyList<string>? DependsOn = null,
    IReadOnlyList<string>? Outputs = null,
    string Host = "command",
    TimeSpan? Timeout = null,
    IReadOnlyDictionary<string, string>? Labels = null);

/// <summary>Everything a farm needs to run one render: built by the host, validated by <see cref="BaseFarmPlugin"/>.</summary>
public sealed record JobRequest
{
    /// <summary>The render context of this submission; submitting it twice returns the first job.</summary>
    public required RenderContext Context { get; init; }

    /// <summary>The job's name, for people.</summary>
    public required string Name { get; init; }

    /// <summary>The tasks; at least one.</summary>
    public required IReadOnlyList<TaskSpec> Tasks { get; init; }

    /// <summary>The folder from <see cref="BaseFarmPlugin.CreateTemporaryFolderAsync"/>.</summary>
    public required string TemporaryFolder { get; init; }

    /// <summary>The relative paths staged by <see cref="BaseFarmPlugin.CopyRenderFilesAsync"/>.</summary>
    public IReadOnlyList<string> Files { get; init; } = [];

    /// <summary>Where each host the tasks need lives on the nodes, by host name.</summary>
    public IReadOnlyDictionary<string, InstallationMetadata> Installations { get; init; } =
        ReadOnlyDictionary<string, InstallationMetadata>.Empty;

    /// <summary>Environment variables for every task.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    /// <summary>0 to 100; higher runs first. 50 by default.</summary>
    public int Priority { get; init; } = 50;

    /// <summary>Attempts per task, at least 1. 3 by default.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Who submits, <c>user@host</c>; the current user when not set.</summary>
    public string? Submitter { get; init; }

    /// <summary>Labels for people: show, shot, department.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    /// <summary>Farm-specific settings: pool, partition, profile.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = ReadOnlyDictionary<string, string>.Empty;
}

/// <summary>The state of a job or a task.</summary>
/// <remarks>A host treats a value it does not know as not terminal: states may be added in a later minor version.</remarks>
public enum JobState
{
    /// <summary>Accepted, not running yet.</summary>
    Waiting,

    /// <summary>At least one task runs.</summary>
    Running,

    /// <summary>Every task completed. Terminal.</summary>
    Completed,

    /// <summary>Stopped by a person. Terminal.</summary>
    Cancelled,

    /// <summary>At least one task failed for good. Terminal.</summary>
    Failed,
}

/// <summary>Helpers for <see cref="JobState"/>.</summary>
public static class JobStateExtensions
{
    /// <summary>Whether the state is final until a restart: Completed, Cancelled or Failed.</summary>
    /// <param name="state">The state.</param>
    /// <returns><see langword="true"/> for a terminal state.</returns>
    public static bool IsTerminal(this JobState state) =>
        state is JobState.Completed or JobState.Cancelled or JobState.Failed;
}

/// <summary>How far a job is, in tasks.</summary>
/// <param name="TotalTasks">All tasks of the job.</param>
/// <param name="CompletedTasks">Tasks that completed.</param>
/// <param name="RunningTasks">Tasks running now.</param>
/// <param name="FailedTasks">Tasks that failed for good.</param>
public sealed record JobProgress(int TotalTasks, int CompletedTasks, int RunningTasks, int FailedTasks);

/// <summary>A job as the farm reports it.</summary>
/// <param name="Id">The farm's job id: self-sufficient, usable from any workstation configured for the farm.</param>
/// <param name="Name">The job's name.</param>
/// <param name="State">Its state.</param>
/// <param name="Progress">Its progress in tasks.</param>
/// <param name="SubmittedAt">When the farm accepted it.</param>
/// <param name="StartedAt">When its first task started.</param>
/// <param name="CompletedAt">When it reached a terminal state.</param>
/// <param name="RenderContextId">The render context it was submitted with.</param>
/// <param name="Submitter">Who submitted it.</param>
/// <param name="LogFile">Where the farm keeps its render log, when that is a file.</param>
/// <param name="Labels">The request's labels.</param>
/// <param name="Properties">Farm-specific facts, for people.</param>
public sealed record Job(
    string Id,
    string Name,
    JobState State,
    JobProgress Progress,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? CompletedAt,
    Guid? RenderContextId = null,
    string? Submitter = null,
    string? LogFile = null,
    IReadOnlyDictionary<string, string>? Labels = null,
    IReadOnlyDictionary<string, string>? Properties = null);

/// <summary>One task of a job as the farm reports it.</summary>
/// <param name="Id">The task id of the request.</param>
/// <param name="State">Its state.</param>
/// <param name="Attempts">Attempts started so far.</param>
/// <param name="Node">The render node of the last attempt.</param>
/// <param name="ExitCode">The exit code of the last finished attempt.</param>
/// <param name="StartedAt">When the last attempt started.</param>
/// <param name="CompletedAt">When the last attempt ended.</param>
/// <param name="Labels">The task's labels.</param>
public sealed record TaskInfo(
    string Id,
    JobState State,
    int Attempts,
    string? Node,
    int? ExitCode,
    DateTimeOffset? StartedAt,
    DateTimeOffset? CompletedAt,
    IReadOnlyDictionary<string, string>? Labels = null);

/// <summary>Which jobs <see cref="BaseFarmPlugin.GetJobsAsync"/> lists. Every field narrows; none set lists all.</summary>
/// <param name="State">Only jobs in this state.</param>
/// <param name="RenderContextId">Only the job of this render context.</param>
/// <param name="Submitter">Only jobs of this submitter.</param>
/// <param name="Limit">At most this many jobs, newest first.</param>
public sealed record JobQuery(JobState? State = null, Guid? RenderContextId = null, string? Submitter = null, int? Limit = null);

/// <summary>A piece of a log.</summary>
/// <remarks>Offsets count bytes of the log's UTF-8 text. A log only grows.</remarks>
/// <param name="Text">The text from the offset asked for.</param>
/// <param name="NextOffset">The offset to read from next.</param>
/// <param name="IsComplete">The job is terminal now and this read reached the end; a restart makes the log grow again.</param>
public sealed record LogChunk(string Text, long NextOffset, bool IsComplete);

/// <summary>How far a transfer is.</summary>
/// <param name="BytesDone">Bytes transferred or found already there.</param>
/// <param name="BytesTotal">Bytes of all files.</param>
/// <param name="FilesDone">Files done.</param>
/// <param name="FilesTotal">All files.</param>
/// <param name="CurrentFile">The file in transfer, when one is.</param>
public sealed record TransferProgress(long BytesDone, long BytesTotal, int FilesDone, int FilesTotal, string? CurrentFile);

/// <summary>The result of <see cref="BaseFarmPlugin.TestAsync"/>.</summary>
/// <param name="Passed">Every check passed.</param>
/// <param name="Checks">The checks, in the order they ran.</param>
public sealed record FarmTestReport(bool Passed, IReadOnlyList<FarmTestCheck> Checks)
{
    /// <summary>Makes a report that passed when every check passed.</summary>
    /// <param name="checks">The checks.</param>
    /// <returns>The report.</returns>
    public static FarmTestReport From(IReadOnlyList<FarmTestCheck> checks) => new(checks.All(c => c.Passed), checks);
}

/// <summary>One check of a farm test.</summary>
/// <param name="Name">What was checked.</param>
/// <param name="Passed">Whether it passed.</param>
/// <param name="Detail">What was found.</param>
public sealed record FarmTestCheck(string Name, bool Passed, string Detail);

/// <summary>A setting a plug-in reads from <see cref="FarmPluginContext.Settings"/>.</summary>
/// <param name="Name">The key, matched case-insensitively.</param>
/// <param name="Description">What it does.</param>
/// <param name="IsSecret">Never logged, printed, written to a job folder or put on a command line.</param>
/// <param name="DefaultValue">The value when not set.</param>
public sealed record SettingDescriptor(string Name, string Description, bool IsSecret = false, string? DefaultValue = null);

/// <summary>The optional operations a plug-in supports: the hooks it overrides, narrowed at run time.</summary>
[Flags]
public enum FarmCapabilities
{
    /// <summary>No optional operation.</summary>
    None = 0,

    /// <summary><see cref="BaseFarmPlugin.CopyRenderFilesAsync"/>.</summary>
    CopyFiles = 1,

    /// <summary><see cref="BaseFarmPlugin.ReadRenderLogAsync"/>.</summary>
    RenderLog = 2,

    /// <summary><see cref="BaseFarmPlugin.StopJobAsync"/>.</summary>
    Stop = 4,

    /// <summary><see cref="BaseFarmPlugin.RestartJobAsync"/>.</summary>
    Restart = 8,

    /// <summary><see cref="BaseFarmPlugin.TestAsync"/>.</summary>
    Test = 16,

    /// <summary><see cref="BaseFarmPlugin.GetTasksAsync"/>.</summary>
    TaskDetails = 32,

    /// <summary><see cref="BaseFarmPlugin.ReadTaskLogAsync"/>.</summary>
    TaskLog = 64,

    /// <summary><see cref="BaseFarmPlugin.FetchOutputsAsync"/>.</summary>
    FetchOutputs = 128,

    /// <summary><see cref="BaseFarmPlugin.DeleteJobAsync"/>.</summary>
    Delete = 256,
}

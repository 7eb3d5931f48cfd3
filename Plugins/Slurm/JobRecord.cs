using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using FarmApi;

namespace FarmPlugins.Slurm;

/// <summary>
/// The adapter's record of one job, kept in its job folder under <c>SharedRoot</c> so any workstation can answer for
/// a job Slurm has forgotten: the request, the array jobs of every run, and the states the adapter decided itself.
/// </summary>
internal sealed class JobRecord
{
    public int Version { get; set; } = 1;

    public required string JobId { get; set; }

    public required string Name { get; set; }

    public Guid RenderContextId { get; set; }

    public string? Submitter { get; set; }

    public DateTimeOffset SubmittedAt { get; set; }

    public Dictionary<string, string> Labels { get; set; } = [];

    public Dictionary<string, string> Environment { get; set; } = [];

    public int Priority { get; set; } = 50;

    public int MaxAttempts { get; set; } = 1;

    /// <summary>The cluster's MaxArraySize when the job was submitted: task <c>o</c> is element <c>o % size</c> of chunk <c>o / size</c>.</summary>
    public int MaxArraySize { get; set; } = 1001;

    /// <summary>The sbatch options every run of the job uses (settings and request overrides, fixed at submission).</summary>
    public List<string> SbatchOptions { get; set; } = [];

    public List<TaskRecord> Tasks { get; set; } = [];

    public List<RunRecord> Runs { get; set; } = [];

    /// <summary>Set when a job that was not terminal is stopped; cleared by a restart.</summary>
    public DateTimeOffset? StoppedAt { get; set; }

    public RunRecord Run(int number) => Runs.First(r => r.Number == number);
}

/// <summary>One task of the request, and which run it belongs to now.</summary>
internal sealed class TaskRecord
{
    public required TaskSpec Spec { get; set; }

    /// <summary>The run that last (re)submitted it.</summary>
    public int Run { get; set; } = 1;

    /// <summary>Attempts made in earlier runs.</summary>
    public int PriorAttempts { get; set; }

    /// <summary>A terminal state the adapter decided or saw (stop, a failed dependency, a state only Slurm knew); null otherwise.</summary>
    public TaskFinal? Final { get; set; }
}

/// <summary>A terminal state kept because it may not be found again (Slurm forgets, no exit code was written).</summary>
internal sealed record TaskFinal(JobState State, int? ExitCode, string Reason, DateTimeOffset At, string? Node = null, DateTimeOffset? StartedAt = null);

/// <summary>One submission: the first, or a restart.</summary>
internal sealed class RunRecord
{
    public int Number { get; set; }

    public DateTimeOffset SubmittedAt { get; set; }

    /// <summary>In submission order (dependencies first).</summary>
    public List<ArrayRecord> Arrays { get; set; } = [];
}

/// <summary>One array job: tasks that share their dependencies, in one MaxArraySize chunk.</summary>
internal sealed class ArrayRecord
{
    public required string Key { get; set; }

    public int Chunk { get; set; }

    /// <summary>The tasks' positions in the request; element index = ordinal - chunk * MaxArraySize.</summary>
    public List<int> Ordinals { get; set; } = [];

    /// <summary>Ordinals of the same run this array waits for (afterok).</summary>
    public List<int> DependsOn { get; set; } = [];

    /// <summary>Slurm's job id once sbatch accepted it.</summary>
    public string? SlurmJobId { get; set; }
}

/// <summary>Where everything of one job lives, on this machine and as the nodes see it.</summary>
internal sealed class JobFolder(string sharedRoot, string nodeSharedRoot, string jobId)
{
    public string JobId { get; } = jobId;

    public string Root { get; } = Path.Combine(sharedRoot, jobId);

    public string Farm => Path.Combine(Root, ".farm");

    public string RecordFile => Path.Combine(Farm, "job.json");

    public string LockFile => Path.Combine(Farm, "lock");

    public string LogLockFile => Path.Combine(Farm, "log.lock");

    public string Logs => Path.Combine(Farm, "logs");

    public string JobLog => Path.Combine(Farm, "job.log");

    public string JobLogState => Path.Combine(Farm, "job.log.json");

    public string RunFolder(int run) => Path.Combine(Farm, "run-" + run.ToString(CultureInfo.InvariantCulture));

    public string StatusFolder(int run) => Path.Combine(RunFolder(run), "status");

    public string ExitFile(int run, string taskId) => Path.Combine(StatusFolder(run), taskId + ".exit");

    public string StartFile(int run, string taskId) => Path.Combine(StatusFolder(run), taskId + ".start");

    public string AttemptFile(int run, int ordinal) => Path.Combine(StatusFolder(run), "i" + ordinal.ToString(CultureInfo.InvariantCulture) + ".attempt");

    /// <summary>The per-task log Slurm writes (<c>--output</c>/<c>--error</c> with <c>%a</c>), shared by every run.</summary>
    public string TaskLog(int ordinal, int maxArraySize) => Path.Combine(Logs, LogName(ordinal / maxArraySize, (ordinal % maxArraySize).ToString(CultureInfo.InvariantCulture)));

    public static string LogName(int chunk, string index) => $"task-{chunk.ToString(CultureInfo.InvariantCulture)}-{index}.log";

    /// <summary>A path of this folder as the nodes see it.</summary>
    public string ToNode(string localPath)
    {
        var relative = Path.GetRelativePath(sharedRoot, localPath).Replace('\\', '/');
        return nodeSharedRoot.TrimEnd('/') + "/" + relative;
    }
}

/// <summary>Reads and writes job records: whole-file atomic replaces under an exclusive lock file.</summary>
internal static class JobRecords
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static JobRecord? Read(JobFolder folder)
    {
        try
        {
            using var stream = new FileStream(folder.RecordFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return JsonSerializer.Deserialize<JobRecord>(stream, Json);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
    }

    public static void Write(JobFolder folder, JobRecord record)
    {
        Directory.CreateDirectory(folder.Farm);
        var temporary = folder.RecordFile + $".{Guid.NewGuid():N}.tmp";
        using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(stream, record, Json);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, folder.RecordFile, overwrite: true);
    }

    /// <summary>Holds the job folder's lock: one writer at a time, across processes and workstations.</summary>
    public static Task<FileStream> LockAsync(JobFolder folder, CancellationToken cancellationToken) =>
        LockAsync(folder, folder.LockFile, cancellationToken);

    /// <summary>Holds one of the job folder's lock files.</summary>
    public static async Task<FileStream> LockAsync(JobFolder folder, string lockFile, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(folder.Farm);
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (watch.Elapsed < TimeSpan.FromSeconds(60))
            {
                await Task.Delay(15, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}

using System.Diagnostics;
using System.Text;
using System.Text.Json;
using FarmApi;

// The registration: the name is what `--plugin` takes and what settings are keyed by.
[assembly: FarmPlugin(typeof(SampleFarm.SampleFarmPlugin), "Sample Farm", ApiVersion = "2.0",
    Description = "A sample third-party adapter: runs each task as processes on this machine")]

namespace SampleFarm;

/// <summary>
/// A small farm that runs a job's tasks one after another as processes on this machine, in the job folder. Its state
/// lives in files under the plug-in's data directory, so any instance can read a job by its id. A teaching sample:
/// the tasks run inside the submitting process, so they stop when it exits.
/// </summary>
public sealed class SampleFarmPlugin : BaseFarmPlugin
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _runs = [];

    /// <summary>The settings this farm reads.</summary>
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() =>
        [new("JobsFolder", "Where job folders are made; the default is jobs/ in the plug-in's data directory.")];

    /// <summary>The job folder: one per render context, under the data directory.</summary>
    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var folder = JobFolder(context.Id);
        Directory.CreateDirectory(folder);
        return Task.FromResult(folder);
    }

    /// <summary>Staging is a copy into the job folder.</summary>
    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var copied = new List<string>();
        foreach (var file in files)
        {
            var target = JobPaths.ResolveInside(temporaryFolder, file.RelativePath);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            await using (var source = File.OpenRead(file.LocalPath))
            await using (var destination = File.Create(target))
            {
                await source.CopyToAsync(destination, cancellationToken).ConfigureAwait(false);
            }

            copied.Add(target);
            progress?.Report(new TransferProgress(0, 0, copied.Count, files.Count, file.RelativePath));
        }

        return copied;
    }

    /// <summary>Render nodes are this machine: a host's executable is found on PATH.</summary>
    protected override Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken) =>
        Task.FromResult(new InstallationMetadata(host, "local", host, Platform: System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier));

    /// <summary>Writes the job file (durable acceptance), then runs the tasks in the background.</summary>
    protected override async Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var jobId = "sample-" + request.Context.Id.ToString("N");
        var folder = JobFolder(request.Context.Id);
        Directory.CreateDirectory(folder);
        if (File.Exists(StateFile(folder)))
        {
            return jobId; // idempotent per render context
        }

        var state = new JobFile(jobId, request.Name, request.Context.Id, request.Submitter ?? Environment.UserName,
            TimeProvider.GetUtcNow(), null, null, JobState.Waiting,
            request.Tasks.Select(t => new TaskFile(t.Id, JobState.Waiting, null)).ToList());
        await SaveAsync(folder, state).ConfigureAwait(false);
        lock (_runs)
        {
            _runs.Add(Task.Run(() => RunAsync(request, folder, state, _stopping.Token), CancellationToken.None));
        }

        return jobId;
    }

    /// <summary>Every job folder with a state file.</summary>
    protected override async Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken)
    {
        var jobs = new List<Job>();
        var root = JobsRoot;
        foreach (var folder in Directory.Exists(root) ? Directory.GetDirectories(root) : [])
        {
            if (File.Exists(StateFile(folder)))
            {
                jobs.Add(ToJob(await LoadAsync(folder, cancellationToken).ConfigureAwait(false), folder));
            }
        }

        return jobs.Where(j => (query.State is null || j.State == query.State)
                && (query.RenderContextId is null || j.RenderContextId == query.RenderContextId)
                && (query.Submitter is null || j.Submitter == query.Submitter))
            .OrderByDescending(j => j.SubmittedAt).Take(query.Limit ?? int.MaxValue).ToList();
    }

    /// <summary>Reads the job's state file.</summary>
    protected override async Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var folder = FolderOf(jobId);
        return ToJob(await LoadAsync(folder, cancellationToken).ConfigureAwait(false), folder);
    }

    /// <summary>The job's log: every command's output, in order.</summary>
    protected override async Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        var folder = FolderOf(jobId);
        var state = await LoadAsync(folder, cancellationToken).ConfigureAwait(false);
        var log = Path.Combine(folder, "render.log");
        if (!File.Exists(log))
        {
            return new LogChunk(string.Empty, offset, state.State.IsTerminal());
        }

        await using var stream = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        stream.Seek(Math.Min(offset, stream.Length), SeekOrigin.Begin);
        var bytes = new byte[stream.Length - stream.Position];
        await stream.ReadExactlyAsync(bytes, cancellationToken).ConfigureAwait(false);
        var whole = CompleteUtf8Length(bytes); // never hand back half a character: the next read starts there
        return new LogChunk(Encoding.UTF8.GetString(bytes, 0, whole), Math.Min(offset, stream.Length) + whole, state.State.IsTerminal() && whole == bytes.Length);
    }

    /// <summary>Stops the tasks this instance runs.</summary>
    protected override async ValueTask DisposeCoreAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        Task[] runs;
        lock (_runs)
        {
            runs = [.. _runs];
        }

        await Task.WhenAll(runs).ConfigureAwait(false);
        _stopping.Dispose();
    }

    private async Task RunAsync(JobRequest request, string folder, JobFile state, CancellationToken cancellationToken)
    {
        state = state with { State = JobState.Running, StartedAt = TimeProvider.GetUtcNow() };
        await SaveAsync(folder, state).ConfigureAwait(false);
        var done = new HashSet<string>(StringComparer.Ordinal);
        var pending = request.Tasks.ToList();
        var failed = false;
        try
        {
            while (pending.Count > 0 && !failed)
            {
                // The validator guarantees no cycle, so some task is always ready.
                var task = pending.First(t => (t.DependsOn ?? []).All(done.Contains));
                pending.Remove(task);
                var exitCode = await RunTaskAsync(request, task, folder, cancellationToken).ConfigureAwait(false);
                var missing = exitCode == 0 ? (task.Outputs ?? []).FirstOrDefault(o => !File.Exists(Path.Combine(folder, o))) : null;
                if (missing is not null)
                {
                    await AppendLogAsync(folder, $"[{task.Id}] missing output {missing}\n").ConfigureAwait(false);
                }

                failed = exitCode != 0 || missing is not null;
                done.Add(task.Id);
                state = state with { Tasks = state.Tasks.Select(t => t.Id == task.Id ? new TaskFile(t.Id, failed ? JobState.Failed : JobState.Completed, exitCode) : t).ToList() };
                await SaveAsync(folder, state).ConfigureAwait(false);
            }

            state = state with { State = failed ? JobState.Failed : JobState.Completed };
        }
        catch (OperationCanceledException)
        {
            state = state with { State = JobState.Cancelled };
        }
        catch (Exception ex) when (ex is IOException or System.ComponentModel.Win32Exception or UnauthorizedAccessException)
        {
            await AppendLogAsync(folder, $"cannot run the job: {Redactor.Redact(ex.Message)}\n").ConfigureAwait(false);
            state = state with { State = JobState.Failed };
        }

        await SaveAsync(folder, state with { CompletedAt = TimeProvider.GetUtcNow() }).ConfigureAwait(false);
    }

    private async Task<int> RunTaskAsync(JobRequest request, TaskSpec task, string folder, CancellationToken cancellationToken)
    {
        foreach (var command in task.Commands)
        {
            var start = new ProcessStartInfo(command.Executable)
            {
                WorkingDirectory = folder,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var argument in command.Arguments)
            {
                start.ArgumentList.Add(argument);
            }

            foreach (var (name, value) in request.Environment)
            {
                start.Environment[name] = value;
            }

            using var process = Process.Start(start) ?? throw new IOException($"cannot start {command.Executable}");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (task.Timeout is { } limit)
            {
                timeout.CancelAfter(limit);
            }

            var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await AppendLogAsync(folder, $"[{task.Id}] killed\n").ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
                return -1; // the task's timeout
            }

            await AppendLogAsync(folder, await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false)).ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                await AppendLogAsync(folder, $"[{task.Id}] {command.Executable} exited with {process.ExitCode}\n").ConfigureAwait(false);
                return process.ExitCode;
            }
        }

        return 0;
    }

    private static int CompleteUtf8Length(byte[] bytes)
    {
        // Walk back over continuation bytes to the last lead byte; keep it only if its sequence is complete.
        var lead = bytes.Length - 1;
        while (lead >= 0 && bytes.Length - lead < 4 && (bytes[lead] & 0xC0) == 0x80)
        {
            lead--;
        }

        if (lead < 0 || bytes[lead] < 0x80)
        {
            return bytes.Length;
        }

        var needed = bytes[lead] >= 0xF0 ? 4 : bytes[lead] >= 0xE0 ? 3 : 2;
        return bytes.Length - lead >= needed ? bytes.Length : lead;
    }

    private string JobsRoot => Context.GetSetting("JobsFolder") ?? Path.Combine(Context.DataDirectory, "jobs");

    private string JobFolder(Guid renderContextId) => Path.Combine(JobsRoot, renderContextId.ToString("N"));

    private string FolderOf(string jobId)
    {
        if (!jobId.StartsWith("sample-", StringComparison.Ordinal) || !Guid.TryParseExact(jobId["sample-".Length..], "N", out var id)
            || !File.Exists(StateFile(JobFolder(id))))
        {
            throw new JobNotFoundException(jobId, Name);
        }

        return JobFolder(id);
    }

    private static string StateFile(string folder) => Path.Combine(folder, "job.json");

    private static async Task AppendLogAsync(string folder, string text) =>
        await File.AppendAllTextAsync(Path.Combine(folder, "render.log"), text).ConfigureAwait(false);

    private static async Task SaveAsync(string folder, JobFile state)
    {
        // Write then rename: a reader never sees half a file.
        var temporary = StateFile(folder) + ".tmp";
        await File.WriteAllTextAsync(temporary, JsonSerializer.Serialize(state, Json)).ConfigureAwait(false);
        File.Move(temporary, StateFile(folder), overwrite: true);
    }

    private static async Task<JobFile> LoadAsync(string folder, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(StateFile(folder));
        return await JsonSerializer.DeserializeAsync<JobFile>(stream, Json, cancellationToken).ConfigureAwait(false)
            ?? throw new FarmPluginException($"{StateFile(folder)} is empty.");
    }

    private static Job ToJob(JobFile state, string folder) => new(
        state.Id, state.Name, state.State,
        new JobProgress(state.Tasks.Count, state.Tasks.Count(t => t.State == JobState.Completed),
            state.State == JobState.Running ? 1 : 0, state.Tasks.Count(t => t.State == JobState.Failed)),
        state.SubmittedAt, state.StartedAt, state.CompletedAt, state.RenderContextId, state.Submitter,
        Path.Combine(folder, "render.log"));

    private sealed record JobFile(string Id, string Name, Guid RenderContextId, string Submitter, DateTimeOffset SubmittedAt,
        DateTimeOffset? StartedAt, DateTimeOffset? CompletedAt, JobState State, List<TaskFile> Tasks);

    private sealed record TaskFile(string Id, JobState State, int? ExitCode);
}

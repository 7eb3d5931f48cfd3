using System.Diagnostics;
using System.Globalization;
using FarmApi;
using FarmApi.Hashing;
using FarmPlugins.Slurm;

[assembly: FarmPlugin(typeof(SlurmPlugin), "Slurm", ApiVersion = "2.0",
    Description = "Renders on an existing Slurm cluster: array jobs over a shared filesystem.")]

namespace FarmPlugins.Slurm;

/// <summary>
/// Slurm: every host's renders on an existing Slurm cluster. Job folders live under <c>SharedRoot</c>, which every
/// node mounts; each group of tasks that share their dependencies becomes one array job (<c>sbatch --array</c>) that
/// runs a generated task script; the adapter's own record of what it submitted lives in the job folder, so the job
/// id (the render context's UUID) is enough for any workstation to find the job, even after Slurm forgot it.
/// </summary>
public sealed partial class SlurmPlugin : BaseFarmPlugin
{
    private const string TaskIndexVariable = "FARM_TASK_INDEX";
    private readonly Dictionary<string, InstallationMetadata> _installations = new(StringComparer.Ordinal);
    private SlurmOptions _options = null!;
    private SlurmCommands _slurm = null!;
    private HashCache _hashCache = null!;

    /// <inheritdoc />
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() => SlurmOptions.Descriptors;

    /// <inheritdoc />
    protected override ValueTask InitializeCoreAsync(CancellationToken cancellationToken)
    {
        // Nothing here talks to Slurm: a host makes many short-lived instances.
        _options = SlurmOptions.Read(Context);
        _slurm = new SlurmCommands(_options, Name);
        Directory.CreateDirectory(Context.DataDirectory);
        _hashCache = new HashCache(Path.Combine(Context.DataDirectory, "hash-cache.json"));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var folder = FolderOf(context.Id);
        Directory.CreateDirectory(folder.Root);
        return Task.FromResult(folder.Root);
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var folder = CheckTemporaryFolder(temporaryFolder, context.Id);
        // Every destination is checked before anything is written.
        var destinations = JobPaths.ResolveAllInside(folder.Root, [.. files.Select(f => f.RelativePath)], "files", "RelativePath");
        // Measured once: the sizes for progress, size and time for the hash cache.
        var measured = files.Select(f => new FileInfo(f.LocalPath)).Select(i => (Size: i.Length, Modified: i.LastWriteTimeUtc)).ToList();
        var total = measured.Sum(m => m.Size);
        var blobs = new FileBlobStore(Path.Combine(_options.SharedRoot, ".blobs"));
        long done = 0;
        var linked = 0;
        for (var i = 0; i < files.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report(new TransferProgress(done, total, i, files.Count, files[i].RelativePath));
            var local = files[i].LocalPath;
            if (_hashCache.TryGetCached(local, measured[i].Size, measured[i].Modified, out var cached) && blobs.Contains(cached))
            {
                // Known and stored: linked, not read.
                await blobs.LinkOrCopyAsync(cached, destinations[i], cancellationToken).ConfigureAwait(false);
                linked++;
            }
            else
            {
                // New: copied once into the shared job folder while it is hashed; that copy becomes its blob.
                var hash = await blobs.CopyAndAddAsync(local, destinations[i], cancellationToken).ConfigureAwait(false);
                _hashCache.Remember(local, measured[i].Size, measured[i].Modified, hash);
            }

            done += measured[i].Size;
        }

        await _hashCache.SaveAsync(cancellationToken).ConfigureAwait(false);
        progress?.Report(new TransferProgress(done, total, files.Count, files.Count, null));
        Log.Staged(Logger, files.Count, linked, folder.Root);
        return destinations.Select(folder.ToNode).ToList();
    }

    /// <inheritdoc />
    protected override async Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken)
    {
        lock (_installations)
        {
            if (_installations.TryGetValue(host, out var cached))
            {
                return cached;
            }
        }

        var metadata = host switch
        {
            "command" => new InstallationMetadata("command", "1.0", "/bin/sh", null, "linux-x64"),
            "povray" => await ProbeAsync("povray", Context.GetSetting("PovRay"), "POV-Ray was not found: install it on the nodes (apt-get install povray) and set the Slurm setting PovRay to its path there", cancellationToken).ConfigureAwait(false),
            "blender" => await ProbeAsync("blender", Context.GetSetting("Blender"), "Blender was not found: install it on the nodes (apt-get install blender) and set the Slurm setting Blender to its path there", cancellationToken).ConfigureAwait(false),
            FarmTools.HostName => FarmToolsMetadata(),
            _ => throw new FarmPluginException($"Slurm does not know the host '{host}' (known: povray, blender, farm-tools, command).", null, Name),
        };
        lock (_installations)
        {
            _installations[host] = metadata;
        }

        return metadata;
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(_options.SharedRoot))
        {
            return [];
        }

        var folders = query.RenderContextId is { } contextId
            ? [FolderOf(contextId)]
            : Directory.EnumerateDirectories(_options.SharedRoot)
                .Select(Path.GetFileName)
                .Where(name => ParseJobId(name) is not null)
                .Select(name => FolderOf(ParseJobId(name)!.Value));
        var records = new List<(JobFolder Folder, JobRecord Record)>();
        foreach (var folder in folders)
        {
            var record = JobRecords.Read(folder);
            if (record is not null && (query.Submitter is null || string.Equals(record.Submitter, query.Submitter, StringComparison.Ordinal)))
            {
                records.Add((folder, record));
            }
        }

        // One squeue for every job of the listing.
        var looks = records.Select(r => new JobLook(r.Folder, r.Record)).ToList();
        var elements = await QuerySlurmAsync(looks, cancellationToken).ConfigureAwait(false);
        var jobs = new List<Job>();
        foreach (var look in looks)
        {
            var view = await SettleAsync(look.Folder, Resolve(look, elements), cancellationToken).ConfigureAwait(false);
            if (query.State is null || view.State == query.State)
            {
                jobs.Add(ToJob(view));
            }
        }

        IEnumerable<Job> ordered = jobs.OrderByDescending(j => j.SubmittedAt).ThenBy(j => j.Id, StringComparer.Ordinal);
        return query.Limit is { } limit ? ordered.Take(Math.Max(0, limit)).ToList() : ordered.ToList();
    }

    /// <inheritdoc />
    protected override async Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        ToJob(await ViewAsync(jobId, cancellationToken).ConfigureAwait(false));

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var view = await ViewAsync(jobId, cancellationToken).ConfigureAwait(false);
        return view.Tasks.Select(t => new TaskInfo(t.Task.Spec.Id, t.State, t.Attempts, t.Node, t.ExitCode, t.StartedAt, t.CompletedAt,
            t.Task.Spec.Labels)).ToList();
    }

    /// <inheritdoc />
    protected override async Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        var view = await ViewAsync(jobId, cancellationToken).ConfigureAwait(false);
        var consumedAll = await JobLogWriter.CatchUpAsync(view, cancellationToken).ConfigureAwait(false);
        return JobLogWriter.ReadLines(view.Folder.JobLog, offset, view.State.IsTerminal() && consumedAll, wholeFile: false);
    }

    /// <inheritdoc />
    protected override async Task<LogChunk> ReadTaskLogCoreAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken)
    {
        var view = await ViewAsync(jobId, cancellationToken).ConfigureAwait(false);
        var task = view.Tasks.FirstOrDefault(t => t.Task.Spec.Id == taskId)
            ?? throw new FarmPluginException($"Job {jobId} has no task '{taskId}'.", null, Name);
        var terminal = task.State.IsTerminal();
        return JobLogWriter.ReadLines(view.Folder.TaskLog(task.Ordinal, view.Record.MaxArraySize), offset, terminal, wholeFile: terminal);
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var view = await ViewAsync(jobId, cancellationToken).ConfigureAwait(false);
        var outputs = view.Tasks.Where(t => t.State == JobState.Completed).SelectMany(t => t.Task.Spec.Outputs ?? []);
        return await JobPaths.CopyOutputsAsync(view.Folder.Root, outputs, localFolder, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override async Task StopJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var folder = ExistingFolderOf(jobId);
        List<string> arrays;
        using (await JobRecords.LockAsync(folder, cancellationToken).ConfigureAwait(false))
        {
            var record = JobRecords.Read(folder) ?? throw new JobNotFoundException(jobId, Name);
            var look = new JobLook(folder, record);
            var view = Resolve(look, await QuerySlurmAsync([look], cancellationToken).ConfigureAwait(false));
            if (view.State.IsTerminal())
            {
                return;
            }

            var now = TimeProvider.GetUtcNow();
            arrays = [];
            foreach (var task in view.Tasks.Where(t => !t.State.IsTerminal()))
            {
                task.Task.Final = new TaskFinal(JobState.Cancelled, null, "stopped", now, task.Node, task.StartedAt);
                if (task.ArrayJobId is not null && !arrays.Contains(task.ArrayJobId))
                {
                    arrays.Add(task.ArrayJobId);
                }
            }

            foreach (var task in view.Tasks.Where(t => t.NewFinal is not null && t.Task.Final is null))
            {
                task.Task.Final = task.NewFinal;
            }

            record.StoppedAt = now;
            JobRecords.Write(folder, record);
            await _slurm.CancelAsync(arrays, cancellationToken).ConfigureAwait(false);
        }

        Log.Stopped(Logger, jobId, string.Join(',', arrays));
        // Report once Slurm has really ended the processes (scancel only asks).
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < _options.StopWait)
        {
            var elements = await _slurm.QueryAsync(arrays, cancellationToken).ConfigureAwait(false);
            if (!elements.Values.Any(e => e.State is "RUNNING" or "COMPLETING" or "CONFIGURING" or "SIGNALING"))
            {
                return;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    protected override async Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var view = await ViewAsync(jobId, cancellationToken).ConfigureAwait(false);
        if (!view.State.IsTerminal())
        {
            throw new FarmPluginException($"Job {jobId} is {view.State}; stop it before deleting it.", null, Name);
        }

        var root = view.Folder.Root;
        if (JobPaths.IsWithin(_options.SharedRoot, root) && Directory.Exists(root))
        {
            // The record goes first: a half-deleted folder is no longer a job.
            File.Delete(view.Folder.RecordFile);
            Directory.Delete(root, recursive: true);
        }

        Log.Deleted(Logger, jobId, root);
    }

    /// <inheritdoc />
    protected override async Task<FarmTestReport> TestCoreAsync(CancellationToken cancellationToken)
    {
        var checks = new List<FarmTestCheck>();
        async Task<SlurmCommands.Result?> Try(string name, string command, string[] arguments)
        {
            try
            {
                return await _slurm.RunAsync(command, arguments, cancellationToken).ConfigureAwait(false);
            }
            catch (FarmPluginException ex)
            {
                checks.Add(new FarmTestCheck(name, false, ex.Message));
                return null;
            }
        }

        var ping = await Try("controller", "scontrol", ["ping"]).ConfigureAwait(false);
        if (ping is not null)
        {
            var up = ping.ExitCode == 0 && ping.Output.Contains("is UP", StringComparison.Ordinal);
            checks.Add(new FarmTestCheck("controller", up, (up ? ping.Output : ping.Output + ping.Error).Trim()));
        }

        var sinfo = await Try("sinfo", "sinfo", ["-h", "-o", "%P|%a|%D|%t"]).ConfigureAwait(false);
        if (sinfo is not null)
        {
            var lines = sinfo.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            checks.Add(new FarmTestCheck("sinfo", sinfo.ExitCode == 0 && lines.Length > 0,
                sinfo.ExitCode == 0 ? $"{lines.Length} partition lines" : sinfo.Error.Trim()));
            var partitions = lines.Select(l => l.Split('|')[0]).ToList();
            if (sinfo.ExitCode != 0)
            {
                checks.Add(new FarmTestCheck("partition", false, "not checked: sinfo did not answer"));
            }
            else if (_options.Partition is { } wanted)
            {
                var found = partitions.Any(p => p.TrimEnd('*') == wanted);
                checks.Add(new FarmTestCheck("partition", found,
                    found ? $"'{wanted}' exists" : $"no partition '{wanted}' (there are: {string.Join(", ", partitions)})"));
            }
            else
            {
                var fallback = partitions.FirstOrDefault(p => p.EndsWith('*'));
                checks.Add(new FarmTestCheck("partition", fallback is not null,
                    fallback is not null ? $"the default, '{fallback.TrimEnd('*')}'" : "no Partition set and the cluster has no default partition"));
            }
        }

        var probe = Path.Combine(_options.SharedRoot, $".write-test-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(_options.SharedRoot);
            await File.WriteAllTextAsync(probe, "ok", cancellationToken).ConfigureAwait(false);
            File.Delete(probe);
            checks.Add(new FarmTestCheck("SharedRoot writable", true, _options.SharedRoot));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            checks.Add(new FarmTestCheck("SharedRoot writable", false, $"{_options.SharedRoot}: {ex.Message}"));
        }

        return FarmTestReport.From(checks);
    }

    /// <summary>The job id of a render context: its UUID, which also names the job folder.</summary>
    /// <param name="renderContextId">The render context.</param>
    /// <returns>The job id.</returns>
    public static string JobIdOf(Guid renderContextId) => renderContextId.ToString("D");

    private static Guid? ParseJobId(string? jobId) =>
        jobId is not null && Guid.TryParseExact(jobId, "D", out var id) && id != Guid.Empty && jobId == id.ToString("D") ? id : null;

    private JobFolder FolderOf(Guid id) => new(_options.SharedRoot, _options.NodeSharedRoot, JobIdOf(id));

    private JobFolder FolderOf(string jobId) => FolderOf(ParseJobId(jobId) ?? throw new JobNotFoundException(jobId, Name));

    /// <summary>The folder of a job that exists; checked before taking its lock, which would create the folder.</summary>
    private JobFolder ExistingFolderOf(string jobId)
    {
        var folder = FolderOf(jobId);
        return File.Exists(folder.RecordFile) ? folder : throw new JobNotFoundException(jobId, Name);
    }

    private JobFolder CheckTemporaryFolder(string temporaryFolder, Guid contextId)
    {
        var folder = FolderOf(contextId);
        if (!string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(temporaryFolder)), folder.Root, StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"'{temporaryFolder}' is not the Slurm job folder of render context {contextId}: use the folder CreateTemporaryFolderAsync returned ({folder.Root}).",
                nameof(temporaryFolder));
        }

        Directory.CreateDirectory(folder.Root);
        return folder;
    }

    private InstallationMetadata FarmToolsMetadata()
    {
        var path = FarmTools.Locate(Context.GetSetting("FarmTools"), typeof(SlurmPlugin).Assembly.Location)
            ?? throw new FarmPluginException(
                "farm-tools (the framework's tile merger) was not found: build it with ./farm (HostAdapters/FarmTools) on a filesystem the nodes share, or set the Slurm setting FarmTools.", null, Name);
        return new InstallationMetadata(FarmTools.HostName, "2.0", path, Path.GetDirectoryName(path), "linux-x64");
    }

    private async Task<InstallationMetadata> ProbeAsync(string host, string? configured, string missing, CancellationToken cancellationToken)
    {
        var executable = configured ?? FindOnPath(host);
        if (executable is null)
        {
            throw new FarmPluginException(missing + ".", null, Name);
        }

        var version = "unknown";
        if (File.Exists(executable))
        {
            try
            {
                var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
                info.ArgumentList.Add("--version");
                using var process = Process.Start(info)!;
                process.StandardInput.Close();
                var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
                var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
                using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                limit.CancelAfter(TimeSpan.FromSeconds(20));
                await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
                var match = System.Text.RegularExpressions.Regex.Match(await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false), @"\d+\.\d+(\.\d+)*");
                if (match.Success)
                {
                    version = match.Value;
                }
            }
            catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or OperationCanceledException or IOException)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }
        }

        return new InstallationMetadata(host, version, executable, Path.GetDirectoryName(executable), "linux-x64");
    }

    private static string? FindOnPath(string name)
    {
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(folder, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using FarmApi;
using FarmApi.Hashing;
using FarmApi.Processes;
using FarmPlugins.LocalQueue;

[assembly: FarmPlugin(typeof(LocalQueuePlugin), "LocalQueue", ApiVersion = "2.0",
    Description = "The embedded default farm: a durable queue and agent processes on this machine.")]

namespace FarmPlugins.LocalQueue;

/// <summary>
/// LocalQueue: the farm every user has on day one. Jobs live in a SQLite queue under the plug-in's data directory;
/// agent processes, started on demand and fully detached, run the tasks on this machine and exit when idle.
/// </summary>
public sealed class LocalQueuePlugin : BaseFarmPlugin
{
    private readonly Dictionary<string, InstallationMetadata> _installations = new(StringComparer.Ordinal);
    private LocalQueuePaths _paths = null!;
    private QueueStore _store = null!;
    private HashCache _hashCache = null!;
    private FileBlobStore _blobs = null!;
    private readonly Lock _hashingGate = new();
    private Task _hashing = Task.CompletedTask;
    private int _agents;
    private double _heartbeat;
    private double _lease;
    private double _idle;
    private double _poll;

    /// <inheritdoc />
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() =>
    [
        new("Agents", "How many agent processes run tasks at once.", false, "2"),
        new("IdleSeconds", "An idle agent exits after this many seconds.", false, "60"),
        new("HeartbeatSeconds", "How often a running agent renews its task's lease.", false, "5"),
        new("LeaseSeconds", "A task whose lease is not renewed for this long goes back to the queue.", false, "30"),
        new("PollMilliseconds", "The slow fallback poll of an idle agent (it is woken on submit).", false, "5000"),
        new("BusyTimeoutSeconds", "How long a call waits for a database another process holds locked before it fails.", false, "15"),
        new("PovRay", "The POV-Ray executable; found on PATH when not set.", false, null),
        new("Blender", "The Blender executable; found on PATH when not set.", false, null),
        new("FarmTools", "The farm-tools executable; found next to the plug-in when not set.", false, null),
        new("AgentAssembly", "The FarmPlugins.LocalQueue.dll agents run; this plug-in's own when not set.", false, null),
    ];

    /// <inheritdoc />
    protected override ValueTask InitializeCoreAsync(CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        _agents = Read("Agents", 2, 1, 64, errors);
        _idle = ReadSeconds("IdleSeconds", 60, errors);
        _heartbeat = ReadSeconds("HeartbeatSeconds", 5, errors);
        _lease = ReadSeconds("LeaseSeconds", 30, errors);
        _poll = ReadSeconds("PollMilliseconds", 5000, errors) / 1000.0;
        if (errors.Count == 0 && _lease <= _heartbeat)
        {
            errors.Add($"LeaseSeconds ({_lease}) must be longer than HeartbeatSeconds ({_heartbeat})");
        }

        if (errors.Count > 0)
        {
            throw new FarmPluginException($"LocalQueue settings are invalid: {string.Join("; ", errors)}.", null, "LocalQueue");
        }

        _paths = new LocalQueuePaths(Context.DataDirectory);
        Directory.CreateDirectory(_paths.Jobs);
        Directory.CreateDirectory(_paths.Logs);
        Directory.CreateDirectory(_paths.Agents);
        _store = new QueueStore(_paths.Database, TimeProvider, TimeSpan.FromSeconds(Context.GetDoubleSetting("BusyTimeoutSeconds", 15)));
        _store.Initialize();
        _hashCache = new HashCache(_paths.HashCache);
        _blobs = new FileBlobStore(_paths.Blobs);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var folder = Path.Combine(_paths.Jobs, context.Id.ToString());
        Directory.CreateDirectory(folder);
        return Task.FromResult(folder);
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var folder = CheckJobFolder(temporaryFolder);
        // The previous staging's new files are content-addressed first, so the hash cache knows them.
        await WaitForHashingAsync().ConfigureAwait(false);
        // Every destination is checked before anything is written.
        var destinations = JobPaths.ResolveAllInside(folder, [.. files.Select(f => f.RelativePath)], "files", "RelativePath");
        // Measured once: the sizes for progress, size and time for the hash cache (a file changed since is re-hashed
        // on its next use, as the cache checks them against the file).
        var measured = new (long Size, DateTime Modified)[files.Count];
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount), CancellationToken = cancellationToken };
        Parallel.For(0, files.Count, options, i =>
        {
            var info = new FileInfo(files[i].LocalPath);
            measured[i] = (info.Length, info.LastWriteTimeUtc);
        });
        var total = measured.Sum(m => m.Size);
        // The folders first, so no link finds its folder missing: each mkdir allocates an inode, which on a journal-less
        // ext4 costs a scan past recently deleted ones (0.25-0.5 ms each here), so they are made side by side too.
        var byFolder = Enumerable.Range(0, files.Count).GroupBy(i => Path.GetDirectoryName(destinations[i])!, StringComparer.Ordinal).ToList();
        Parallel.ForEach(byFolder, options, group => Directory.CreateDirectory(group.Key));
        // Taken folder by folder in turn, so the files being placed side by side are in different folders (links into one
        // folder wait for each other on its lock).
        var order = byFolder.SelectMany(g => g.Select((index, rank) => (index, rank))).OrderBy(p => p.rank).Select(p => p.index).ToList();

        long done = 0;
        var filesDone = 0;
        var linked = 0;
        progress?.Report(new TransferProgress(0, total, 0, files.Count, null));
        // Two files at a time; a file the hash cache knows (and whose blob is stored) is linked without being read, and
        // a new one is copied into the job folder by the kernel, as `cp` would; the new files are hashed afterwards, in
        // the background (below), and their copies become their blobs.
        var fresh = new System.Collections.Concurrent.ConcurrentBag<int>();
        await Parallel.ForEachAsync(order, options, async (i, ct) =>
        {
            var local = files[i].LocalPath;
            var stored = false;
            if (_hashCache.TryGetCached(local, measured[i].Size, measured[i].Modified, out var cached))
            {
                try
                {
                    // Linked straight from the store: a blob removed since is found by the link failing, not by looking first.
                    await _blobs.LinkOrCopyAsync(cached, destinations[i], ct).ConfigureAwait(false);
                    Interlocked.Increment(ref linked);
                    stored = true;
                }
                catch (FileNotFoundException)
                {
                }
            }

            if (!stored)
            {
                await _blobs.CopyReadOnlyAsync(local, destinations[i], ct).ConfigureAwait(false);
                fresh.Add(i);
            }

            var bytes = Interlocked.Add(ref done, measured[i].Size);
            var count = Interlocked.Increment(ref filesDone);
            progress?.Report(new TransferProgress(bytes, total, count, files.Count, files[i].RelativePath));
        }).ConfigureAwait(false);

        progress?.Report(new TransferProgress(done, total, files.Count, files.Count, null));
        Log.Staged(Logger, files.Count, linked, folder);
        if (!fresh.IsEmpty)
        {
            var items = fresh.Select(i => (Local: files[i].LocalPath, measured[i].Size, measured[i].Modified, Copy: destinations[i])).ToList();
            lock (_hashingGate)
            {
                // Chained, so stagings running side by side in one host are all waited for.
                var previous = _hashing;
                _hashing = Task.WhenAll(previous, Task.Run(() => HashStagedAsync(items)));
            }
        }

        return destinations;
    }

    /// <summary>
    /// Content-addresses the files a staging copied (the hash of each copy, the copy kept as its blob, the source
    /// remembered in the hash cache), after <see cref="CopyRenderFilesCoreAsync"/> returned: the tree is laid out at the
    /// speed of `cp`, and the next staging (or the plug-in's disposal) waits for this. A source that changed since it
    /// was measured is not remembered (the hash cache checks), so its next staging copies it again.
    /// </summary>
    private async Task HashStagedAsync(List<(string Local, long Size, DateTime Modified, string Copy)> items)
    {
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount) };
        await Parallel.ForEachAsync(items, options, async (item, ct) =>
        {
            try
            {
                var hash = await _blobs.AdoptAsync(item.Copy, ct).ConfigureAwait(false);
                _hashCache.Remember(item.Local, item.Size, item.Modified, hash);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The job (and its copy) went away meanwhile, or the source did: nothing to remember.
                Log.HashingSkipped(Logger, item.Copy, ex.Message);
            }
        }).ConfigureAwait(false);
        await _hashCache.SaveAsync().ConfigureAwait(false);
    }

    private async Task WaitForHashingAsync()
    {
        Task pending;
        lock (_hashingGate)
        {
            pending = _hashing;
        }

        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException or OperationCanceledException)
        {
            // Only the cache misses what was not hashed: those files are copied again next time.
            Log.HashingSkipped(Logger, "(staged files)", ex.Message);
        }
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeCoreAsync()
    {
        await WaitForHashingAsync().ConfigureAwait(false);
        await base.DisposeCoreAsync().ConfigureAwait(false);
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
            "povray" => await Probe("povray", Context.GetSetting("PovRay"), ["povray"], "--version", "POV-Ray is not installed on this machine: run 'apt-get install povray', or set the LocalQueue setting PovRay", cancellationToken).ConfigureAwait(false),
            "blender" => await Probe("blender", Context.GetSetting("Blender"), ["blender"], "--version", "Blender is not installed on this machine: run 'apt-get install blender', or set the LocalQueue setting Blender", cancellationToken).ConfigureAwait(false),
            FarmTools.HostName => FarmToolsMetadata(),
            _ => throw new FarmPluginException($"LocalQueue does not know the host '{host}' (known: povray, blender, farm-tools, command).", null, Name),
        };
        lock (_installations)
        {
            _installations[host] = metadata;
        }

        return metadata;
    }

    /// <inheritdoc />
    protected override Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var folder = CheckJobFolder(request.TemporaryFolder);
        var submitter = request.Submitter ?? $"{Environment.UserName}@{Environment.MachineName}";
        var (jobId, created) = _store.Submit(request, folder, submitter);
        if (created)
        {
            EnsureAgents();
        }

        return Task.FromResult(jobId);
    }

    /// <inheritdoc />
    protected override Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken) =>
        Task.FromResult(WithLogFile(_store.GetJobs(query)));

    /// <inheritdoc />
    protected override Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var job = _store.GetJob(Seq(jobId)) ?? throw new JobNotFoundException(jobId, Name);
        if (!job.State.IsTerminal() && !AnyAgentAlive())
        {
            // Every agent died (killed, machine slept, OOM): whoever watches the job brings the queue back to life.
            EnsureAgents();
        }

        return Task.FromResult(WithLogFile([job])[0]);
    }

    /// <inheritdoc />
    protected override Task<IReadOnlyList<TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<TaskInfo>>(_store.GetTasks(Seq(jobId)).Select(t => t.Info).ToList());

    /// <inheritdoc />
    protected override Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        var seq = Seq(jobId);
        var job = _store.GetJob(seq) ?? throw new JobNotFoundException(jobId, Name);
        return Task.FromResult(ReadLog(_paths.JobLog(seq), offset, job.State.IsTerminal()));
    }

    /// <inheritdoc />
    protected override Task<LogChunk> ReadTaskLogCoreAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken)
    {
        var seq = Seq(jobId);
        var tasks = _store.GetTasks(seq);
        // A task's position in its job is its index in the queue (tasks are stored in request order).
        var index = 0;
        while (index < tasks.Count && tasks[index].Info.Id != taskId)
        {
            index++;
        }

        if (index == tasks.Count)
        {
            throw new FarmPluginException($"Job {jobId} has no task '{taskId}'.", null, Name);
        }

        // A task's log is its file once there is one; the lines of short attempts are kept in the queue instead.
        var path = _paths.TaskLog(seq, taskId);
        var terminal = tasks[index].Info.State.IsTerminal();
        if (File.Exists(path))
        {
            return Task.FromResult(ReadLog(path, offset, terminal));
        }

        var inline = Encoding.UTF8.GetBytes(_store.GetInlineLog(seq, index) ?? string.Empty);
        return Task.FromResult(Chunk(offset < inline.Length ? inline.AsSpan((int)offset) : [], offset, inline.Length, terminal));
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var seq = Seq(jobId);
        var folder = _store.GetFolder(seq) ?? throw new JobNotFoundException(jobId, Name);
        var outputs = _store.GetTasks(seq).Where(t => t.Info.State == JobState.Completed).SelectMany(t => t.Spec.Outputs ?? []);
        return await JobPaths.CopyOutputsAsync(folder, outputs, localFolder, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override Task StopJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var groups = _store.Stop(Seq(jobId));
        foreach (var group in groups)
        {
            _ = NativeMethods.Kill(-group, NativeMethods.SigKill);
        }

        // Agents holding tasks of the job claimed ahead check them before starting any.
        TouchWake();
        Log.Stopped(Logger, jobId, groups.Count);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task RestartJobCoreAsync(string jobId, IReadOnlyCollection<string>? taskIds, CancellationToken cancellationToken)
    {
        _store.Restart(Seq(jobId), taskIds);
        EnsureAgents();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var seq = Seq(jobId);
        var folder = _store.Delete(seq);
        if (JobPaths.IsWithin(_paths.Jobs, folder) && Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        if (Directory.Exists(_paths.JobLogFolder(seq)))
        {
            Directory.Delete(_paths.JobLogFolder(seq), recursive: true);
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task<FarmTestReport> TestCoreAsync(CancellationToken cancellationToken)
    {
        var checks = new List<FarmTestCheck>();
        try
        {
            _store.GetJobs(new JobQuery(Limit: 1));
            checks.Add(new FarmTestCheck("queue database", true, _paths.Database));
        }
        catch (FarmPluginException ex)
        {
            checks.Add(new FarmTestCheck("queue database", false, ex.Message));
        }

        var probe = Path.Combine(_paths.Root, $".write-test-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllText(probe, "ok");
            File.Delete(probe);
            checks.Add(new FarmTestCheck("data directory writable", true, _paths.Root));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            checks.Add(new FarmTestCheck("data directory writable", false, ex.Message));
        }

        var agent = AgentAssembly();
        checks.Add(agent is null
            ? new FarmTestCheck("agent executable", false, "FarmPlugins.LocalQueue.dll with its runtimeconfig.json was not found; set AgentAssembly")
            : new FarmTestCheck("agent executable", true, agent));
        var alive = _store.GetAgents().Count(a => NativeMethods.IsAlive(a.Pid));
        checks.Add(new FarmTestCheck("agents", true, $"{alive} running now; up to {_agents} start on demand"));
        return Task.FromResult(FarmTestReport.From(checks));
    }

    /// <summary>The process ids of this data directory's agents, for tests and tools that must stop them.</summary>
    /// <param name="dataDirectory">The plug-in's data directory.</param>
    /// <returns>The pids recorded by live or dead agents.</returns>
    public static IReadOnlyList<int> AgentProcessIds(string dataDirectory)
    {
        var folder = new LocalQueuePaths(dataDirectory).Agents;
        if (!Directory.Exists(folder))
        {
            return [];
        }

        return Directory.GetFiles(folder, "*.pid")
            .Select(f => int.TryParse(File.ReadAllText(f).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) ? pid : 0)
            .Where(p => p > 0).ToList();
    }

    private IReadOnlyList<Job> WithLogFile(IReadOnlyList<Job> jobs) =>
        jobs.Select(j => j with { LogFile = _paths.JobLog(QueueStore.ParseJobId(j.Id)!.Value) }).ToList();

    private long Seq(string jobId) => QueueStore.ParseJobId(jobId) ?? throw new JobNotFoundException(jobId, Name);

    private string CheckJobFolder(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!JobPaths.IsWithin(_paths.Jobs, full) || full == Path.TrimEndingDirectorySeparator(_paths.Jobs))
        {
            throw new ArgumentException($"'{folder}' is not a LocalQueue job folder: use the folder CreateTemporaryFolderAsync returned.", nameof(folder));
        }

        Directory.CreateDirectory(full);
        return full;
    }

    private static LogChunk ReadLog(string path, long offset, bool terminal)
    {
        if (!File.Exists(path))
        {
            return Chunk([], offset, 0, terminal);
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var length = stream.Length;
        var buffer = new byte[Math.Max(0, length - offset)];
        if (buffer.Length > 0)
        {
            stream.Position = offset;
            stream.ReadExactly(buffer);
        }

        return Chunk(buffer, offset, length, terminal);
    }

    /// <summary>
    /// A log's chunk from <paramref name="offset"/>, given the bytes from there to the log's end (<paramref name="length"/>
    /// long): whole lines only (a line being written is read next time, whole); complete once the log is terminal and it
    /// was read to its end.
    /// </summary>
    private static LogChunk Chunk(ReadOnlySpan<byte> rest, long offset, long length, bool terminal)
    {
        var end = rest.LastIndexOf((byte)'\n') + 1;
        return new LogChunk(Encoding.UTF8.GetString(rest[..end]), offset + end, terminal && offset + end == length);
    }

    private bool AnyAgentAlive()
    {
        var staleAfter = TimeSpan.FromSeconds(Math.Max(_lease, 3 * _heartbeat));
        return _store.GetAgents().Any(a => NativeMethods.IsAlive(a.Pid) && TimeProvider.GetUtcNow() - a.Heartbeat < staleAfter);
    }

    private void EnsureAgents()
    {
        TouchWake();
        using var gate = AcquireAgentsLock();
        var alive = 0;
        var staleAfter = TimeSpan.FromSeconds(Math.Max(_lease, 3 * _heartbeat));
        foreach (var (id, pid, heartbeat) in _store.GetAgents())
        {
            if (NativeMethods.IsAlive(pid) && TimeProvider.GetUtcNow() - heartbeat < staleAfter)
            {
                alive++;
            }
            else
            {
                _store.RemoveAgent(id);
            }
        }

        for (var i = alive; i < _agents; i++)
        {
            StartAgent();
        }
    }

    private void StartAgent()
    {
        var assembly = AgentAssembly() ?? throw new FarmPluginException(
            "The LocalQueue agent (FarmPlugins.LocalQueue.dll with its runtimeconfig.json) was not found; set the LocalQueue setting AgentAssembly.", null, Name);
        var agentId = $"agent-{Guid.NewGuid():N}"[..18];
        var output = _paths.AgentOutput(agentId);
        // A new session, stdin closed and output to a file: nothing ties the agent to the host or a test runner.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("exec setsid \"$@\" </dev/null >>\"$FARM_AGENT_OUTPUT\" 2>&1");
        info.ArgumentList.Add("farm-localqueue-agent");
        info.ArgumentList.Add(DotnetHost());
        info.ArgumentList.Add(assembly);
        info.ArgumentList.Add("agent");
        foreach (var (flag, value) in new (string, double)[] { ("--heartbeat", _heartbeat), ("--lease", _lease), ("--idle", _idle), ("--poll", _poll) })
        {
            info.ArgumentList.Add(flag);
            info.ArgumentList.Add(value.ToString(CultureInfo.InvariantCulture));
        }

        info.ArgumentList.Add("--data");
        info.ArgumentList.Add(_paths.Root);
        info.ArgumentList.Add("--id");
        info.ArgumentList.Add(agentId);
        info.Environment["FARM_AGENT_OUTPUT"] = output;
        using var process = Process.Start(info) ?? throw new FarmPluginException("The LocalQueue agent could not be started.", null, Name);
        _store.Heartbeat(agentId, process.Id);
        Log.AgentStarted(Logger, agentId, process.Id);
    }

    private string? AgentAssembly()
    {
        var configured = Context.GetSetting("AgentAssembly");
        var candidate = configured ?? typeof(LocalQueuePlugin).Assembly.Location;
        if (string.IsNullOrEmpty(candidate))
        {
            return null;
        }

        var runtimeConfig = Path.ChangeExtension(candidate, ".runtimeconfig.json");
        return File.Exists(candidate) && File.Exists(runtimeConfig) ? Path.GetFullPath(candidate) : null;
    }

    private static string DotnetHost()
    {
        var fromHost = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromHost) && File.Exists(fromHost))
        {
            return fromHost;
        }

        var current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }

    private void TouchWake()
    {
        Directory.CreateDirectory(_paths.WakeFolder);
        File.WriteAllText(_paths.Wake, TimeProvider.GetUtcNow().ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture));
    }

    private FileStream AcquireAgentsLock()
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(_paths.AgentsLock, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (watch.Elapsed < TimeSpan.FromSeconds(30))
            {
                Thread.Sleep(20);
            }
        }
    }

    private InstallationMetadata FarmToolsMetadata()
    {
        var path = FarmTools.Locate(Context.GetSetting("FarmTools"), typeof(LocalQueuePlugin).Assembly.Location)
            ?? throw new FarmPluginException(
                "farm-tools (the framework's tile merger) was not found: build it with ./farm (HostAdapters/FarmTools), or set the LocalQueue setting FarmTools.", null, Name);
        return new InstallationMetadata(FarmTools.HostName, "2.0", path, Path.GetDirectoryName(path), "linux-x64");
    }

    private static async Task<InstallationMetadata> Probe(string host, string? configured, string[] names, string versionFlag, string missing,
        CancellationToken cancellationToken)
    {
        var executable = configured ?? names.Select(n => ExecutableLookup.FindOnPath(n, Environment.GetEnvironmentVariable("PATH"))).FirstOrDefault(p => p is not null);
        if (executable is null || !File.Exists(executable))
        {
            throw new FarmPluginException(missing + ".", null, "LocalQueue");
        }

        var version = "unknown";
        try
        {
            var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            info.ArgumentList.Add(versionFlag);
            using var process = Process.Start(info)!;
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            limit.CancelAfter(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            var text = await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false);
            var match = System.Text.RegularExpressions.Regex.Match(text, @"\d+\.\d+(\.\d+)*");
            if (match.Success)
            {
                version = match.Value;
            }
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or OperationCanceledException or IOException)
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        return new InstallationMetadata(host, version, executable, Path.GetDirectoryName(executable), "linux-x64");
    }

    private int Read(string name, int fallback, int min, int max, List<string> errors)
    {
        try
        {
            var value = Context.GetInt32Setting(name, fallback);
            if (value < min || value > max)
            {
                errors.Add($"{name} must be between {min} and {max}, not {value}");
            }

            return value;
        }
        catch (FarmPluginException ex)
        {
            errors.Add(ex.Message);
            return fallback;
        }
    }

    private double ReadSeconds(string name, double fallback, List<string> errors)
    {
        try
        {
            var value = Context.GetDoubleSetting(name, fallback);
            if (value <= 0)
            {
                errors.Add($"{name} must be positive, not {value.ToString(CultureInfo.InvariantCulture)}");
            }

            return value;
        }
        catch (FarmPluginException ex)
        {
            errors.Add(ex.Message);
            return fallback;
        }
    }
}

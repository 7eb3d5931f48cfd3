using System.Globalization;
using System.Text.Json.Nodes;
using FarmApi;
using FarmApi.TaskScripts;
using FarmPlugins.Qarnot;

[assembly: FarmPlugin(typeof(QarnotPlugin), "Qarnot", ApiVersion = "2.0",
    Description = "Qarnot's cloud: tasks through its REST API, files in its S3 buckets.")]

namespace FarmPlugins.Qarnot;

/// <summary>
/// Qarnot: renders on Qarnot's cloud. The job folder is a prefix of a resource bucket (<c>s3://bucket/context-id/</c>,
/// <c>/job</c> on the node); each dependency level of the request becomes a Qarnot task (a "part") whose instances
/// run a staged task script for <c>$INSTANCE_ID</c>; results come back in a result bucket per job. Parts are tagged
/// with the render context, so the job id (<c>qarnot-&lt;context&gt;</c>) finds them from any workstation.
/// </summary>
public sealed class QarnotPlugin : BaseFarmPlugin
{
    internal const string JobIdPrefix = "qarnot-";
    internal const string FarmTag = "farmplugins";
    internal const string ScriptKey = ".farm/qarnot/task.sh";
    internal const string ManifestKey = ".farm/qarnot/job.json";
    internal const string ToolsFolder = ".farm/tools";
    internal const string StatusFolder = ".farm/status";

    private readonly SemaphoreSlim _connectGate = new(1);
    private QarnotOptions _options = null!;
    private QarnotApi _api = null!;
    private LocalJobStore _local = null!;
    private QarnotStorage? _storage;
    private Uri? _storageUrl;
    private bool _storageKnownMissing;

    /// <inheritdoc />
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() => QarnotOptions.Descriptors;

    /// <inheritdoc />
    protected override async ValueTask InitializeCoreAsync(CancellationToken cancellationToken)
    {
        _options = QarnotOptions.Read(Context);
        _api = new QarnotApi(_options, Logger, Context.PluginName);
        _local = new LocalJobStore(Context.DataDirectory);
        Directory.CreateDirectory(Context.DataDirectory);
        try
        {
            // One quick look: a refused token fails here, an account without storage loses CopyFiles.
            var settings = await _api.SendAsync(HttpMethod.Get, "settings", null, cancellationToken, maxRetries: 0).ConfigureAwait(false);
            ReadStorageUrl(settings.Body);
        }
        catch (FarmUnavailableException ex)
        {
            Log.ConnectDeferred(Logger, ex.Message);
        }
        catch
        {
            // A refused token ends the initialization: the host never disposes a plug-in that did not initialize.
            _api.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    protected override FarmCapabilities GetRuntimeCapabilitiesCore() =>
        _storageKnownMissing ? ~(FarmCapabilities.CopyFiles | FarmCapabilities.FetchOutputs) : (FarmCapabilities)~0;

    /// <inheritdoc />
    protected override async Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        await storage.EnsureBucketAsync(ResourceBucket, cancellationToken).ConfigureAwait(false);
        return FolderUri(context.Id);
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var (bucket, prefix) = CheckFolder(temporaryFolder, context.Id, nameof(temporaryFolder));
        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        var keys = files.Select(f => (f.LocalPath, Key: prefix + f.RelativePath.Replace('\\', '/'))).ToList();
        var result = await storage.UploadAsync(bucket, prefix, keys, progress, cancellationToken).ConfigureAwait(false);
        Log.Staged(Logger, files.Count, temporaryFolder, result.Uploaded, result.BytesSent, result.Skipped);
        return [.. keys.Select(k => $"s3://{bucket}/{k.Key}")];
    }

    /// <inheritdoc />
    protected override Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken)
    {
        var metadata = host switch
        {
            "command" => new InstallationMetadata("command", "1.0", "/bin/sh", null, "linux-x64"),
            "povray" => new InstallationMetadata("povray", "3.7", "povray", null, "linux-x64"),
            "blender" => new InstallationMetadata("blender", "3.4", "blender", null, "linux-x64"),
            FarmTools.HostName => LocateFarmTools() is null
                ? throw new FarmPluginException(
                    "Qarnot: farm-tools (the framework's tile merger, staged with each job) was not found: build it (HostAdapters/FarmTools) or set the Qarnot setting FarmTools.",
                    null, Name)
                : new InstallationMetadata(FarmTools.HostName, "2.0", $"{ToolsFolder}/{FarmTools.ExecutableName}", ToolsFolder, "linux-x64"),
            _ => throw new FarmPluginException($"Qarnot does not know the host '{host}' (known: povray, blender, farm-tools, command).", null, Name),
        };
        return Task.FromResult(metadata);
    }

    /// <inheritdoc />
    protected override async Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var (bucket, prefix) = CheckFolder(request.TemporaryFolder, request.Context.Id, "TemporaryFolder");
        var jobId = JobIdPrefix + request.Context.Id.ToString("N");
        var existing = await ListPartsAsync(request.Context.Id, cancellationToken).ConfigureAwait(false);
        var manifest = BuildManifest(request, bucket, prefix);
        var plan = PlanParts(manifest.Tasks.Select(t => (t.Index, t.Level)).ToList());
        var have = existing.ToDictionary(p => p.Number);
        if (plan.All(p => have.ContainsKey(p.Number)))
        {
            return jobId;
        }

        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        // The manifest of a first, interrupted submission wins: it holds the original submission time.
        var stored = JobManifest.FromJson(await storage.GetTextAsync(bucket, prefix + ManifestKey, cancellationToken).ConfigureAwait(false));
        if (stored is null)
        {
            await storage.PutTextAsync(bucket, prefix + ManifestKey, manifest.ToJson(), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            manifest = stored;
        }

        var script = TaskScriptWriter.Write(
            [.. request.Tasks.Select((t, i) => new TaskScriptEntry(i, t))],
            new TaskScriptOptions { IndexVariable = "INSTANCE_ID", Environment = request.Environment, StatusFolder = StatusFolder });
        await storage.PutTextAsync(bucket, prefix + ScriptKey, script, cancellationToken).ConfigureAwait(false);
        if (request.Tasks.Any(t => t.Host == FarmTools.HostName) || request.Installations.ContainsKey(FarmTools.HostName))
        {
            await StageFarmToolsAsync(storage, bucket, prefix, cancellationToken).ConfigureAwait(false);
        }

        await storage.EnsureBucketAsync(manifest.ResultBucket, cancellationToken).ConfigureAwait(false);
        foreach (var part in plan)
        {
            if (have.ContainsKey(part.Number))
            {
                continue;
            }

            var dependsOn = have.Values.Where(p => p.Level == part.Level - 1).Select(p => p.Task.Uuid).ToList();
            var created = await CreatePartAsync(manifest, jobId, part.Number, part.Level, part.Indices, dependsOn, cancellationToken).ConfigureAwait(false);
            have[part.Number] = created;
        }

        return jobId;
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken)
    {
        var tag = query.RenderContextId is { } id ? ContextTag(id) : FarmTag;
        var parts = await ListTasksAsync(tag, cancellationToken).ConfigureAwait(false);
        var jobs = new List<Job>();
        foreach (var group in parts.Select(ToPart).OfType<Part>().GroupBy(p => p.ContextId))
        {
            var job = ToJob(group.Key, JobView.Build([.. group]));
            if ((query.State is null || job.State == query.State)
                && (query.Submitter is null || string.Equals(job.Submitter, query.Submitter, StringComparison.Ordinal)))
            {
                jobs.Add(job);
            }
        }

        IEnumerable<Job> ordered = jobs.OrderByDescending(j => j.SubmittedAt).ThenByDescending(j => j.Id, StringComparer.Ordinal);
        return query.Limit is { } limit ? [.. ordered.Take(limit)] : [.. ordered];
    }

    /// <inheritdoc />
    protected override async Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        return ToJob(contextId, JobView.Build(parts));
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        var manifest = await ManifestAsync(jobId, parts, cancellationToken).ConfigureAwait(false);
        var view = JobView.Build(parts);
        var failed = manifest.Tasks.Where(t => view.Instance(t.Index).State == JobState.Failed).ToList();
        var exitCodes = new Dictionary<string, int?>(StringComparer.Ordinal);
        if (failed.Count > 0)
        {
            // The task script leaves each task's exit code in .farm/status, which the platform uploads with the results.
            var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
            foreach (var task in failed)
            {
                var text = await storage.GetTextAsync(manifest.ResultBucket, $"{StatusFolder}/{task.Id}.exit", cancellationToken).ConfigureAwait(false);
                exitCodes[task.Id] = int.TryParse(text?.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var code) ? code : null;
            }
        }

        return [.. manifest.Tasks.OrderBy(t => t.Index).Select(t =>
        {
            var instance = view.Instance(t.Index);
            int? exit = instance.State switch
            {
                JobState.Completed => 0,
                JobState.Failed => exitCodes.GetValueOrDefault(t.Id),
                _ => null,
            };
            return new TaskInfo(t.Id, instance.State, instance.Attempts, instance.Part is null ? null : "qarnot:" + instance.Part.Task.Uuid,
                exit, instance.Part?.Task.CreationDate, instance.State.IsTerminal() ? instance.Part?.Task.Ended : null, t.Labels);
        })];
    }

    /// <inheritdoc />
    protected override async Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        return await _local.LockedAsync(jobId, async () =>
        {
            var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
            var view = JobView.Build(parts);
            var drained = _local.ReadSet(jobId, "drained");
            var path = _local.RenderLog(jobId);
            foreach (var part in parts.Where(p => !drained.Contains(p.Task.Uuid)).OrderBy(p => p.Number))
            {
                var terminal = QarnotStates.IsTerminal(part.Task.State);
                if (!terminal && view.IsBlocked(part))
                {
                    continue;
                }

                foreach (var stream in new[] { "stdout", "stderr" })
                {
                    var fresh = await _api.SendAsync(HttpMethod.Post, $"tasks/{part.Task.Uuid}/{stream}", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
                    if (!fresh.NotFound)
                    {
                        LocalJobStore.Append(path, fresh.Body);
                    }
                }

                if (terminal)
                {
                    drained.Add(part.Task.Uuid);
                }
            }

            _local.WriteSet(jobId, "drained", drained);
            var complete = view.State.IsTerminal() && parts.All(p => drained.Contains(p.Task.Uuid) || view.IsBlocked(p));
            return LocalJobStore.Read(path, offset, complete);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override async Task<LogChunk> ReadTaskLogCoreAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        return await _local.LockedAsync(jobId, async () =>
        {
            var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
            var manifest = await ManifestAsync(jobId, parts, cancellationToken).ConfigureAwait(false);
            var task = manifest.Tasks.FirstOrDefault(t => t.Id == taskId)
                ?? throw new FarmPluginException($"Job {jobId} has no task '{taskId}'.", null, Name);
            var view = JobView.Build(parts);
            var drained = _local.ReadSet(jobId, "drained-tasks");
            var path = _local.TaskLog(jobId, taskId);
            foreach (var part in parts.Where(p => p.Indices.Contains(task.Index)).OrderBy(p => p.Number))
            {
                var key = $"{part.Task.Uuid}/{task.Index}";
                var terminal = QarnotStates.IsTerminal(part.Task.State);
                if (drained.Contains(key) || (!terminal && view.IsBlocked(part)))
                {
                    continue;
                }

                foreach (var stream in new[] { "stdout", "stderr" })
                {
                    var fresh = await _api.SendAsync(HttpMethod.Post, $"tasks/{part.Task.Uuid}/{stream}/{task.Index}", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
                    if (!fresh.NotFound)
                    {
                        LocalJobStore.Append(path, fresh.Body);
                    }
                }

                if (terminal)
                {
                    drained.Add(key);
                }
            }

            _local.WriteSet(jobId, "drained-tasks", drained);
            var instance = view.Instance(task.Index);
            var complete = instance.State.IsTerminal() && parts.Where(p => p.Indices.Contains(task.Index))
                .All(p => drained.Contains($"{p.Task.Uuid}/{task.Index}") || view.IsBlocked(p));
            return LocalJobStore.Read(path, offset, complete);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override async Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        var manifest = await ManifestAsync(jobId, parts, cancellationToken).ConfigureAwait(false);
        var view = JobView.Build(parts);
        var outputs = manifest.Tasks.Where(t => view.Instance(t.Index).State == JobState.Completed)
            .SelectMany(t => t.Outputs).Distinct(StringComparer.Ordinal).ToList();
        var folder = Path.GetFullPath(localFolder);
        var signature = string.Join(',', parts.OrderBy(p => p.Number).Select(p => $"{p.Number}:{p.Task.ResultsCount}"));
        var fetchState = _local.ReadJson<Dictionary<string, FetchRecord>>(jobId, "fetched.json") ?? [];
        // Results only change when resultsCount grows: with the same count and the files still there, nothing to do.
        if (fetchState.TryGetValue(folder, out var last) && last.Signature == signature
            && outputs.All(o => last.Files.TryGetValue(o, out var size) && File.Exists(Path.Combine(folder, o)) && new FileInfo(Path.Combine(folder, o)).Length == size))
        {
            progress?.Report(new TransferProgress(last.Files.Values.Sum(), last.Files.Values.Sum(), last.Files.Count, last.Files.Count, null));
            return [];
        }

        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        var listing = await storage.ListAsync(manifest.ResultBucket, string.Empty, cancellationToken).ConfigureAwait(false);
        var present = outputs.Where(listing.ContainsKey).Select(o => (Output: o, Remote: listing[o], Local: JobPaths.ResolveInside(folder, o, "output"))).ToList();
        var total = present.Sum(p => p.Remote.Size);
        long done = 0;
        var filesDone = 0;
        var written = new List<string>();
        var skipped = 0;
        await Parallel.ForEachAsync(present, new ParallelOptions { MaxDegreeOfParallelism = _options.Transfers, CancellationToken = cancellationToken },
            async (item, ct) =>
            {
                var same = File.Exists(item.Local) && new FileInfo(item.Local).Length == item.Remote.Size
                    && QarnotStorage.EtagMatches(await QarnotStorage.ComputeEtagAsync(item.Local, QarnotStorage.PartSize, ct).ConfigureAwait(false), item.Remote.ETag);
                if (same)
                {
                    Interlocked.Increment(ref skipped);
                }
                else
                {
                    await storage.DownloadAsync(manifest.ResultBucket, item.Output, item.Local, item.Remote.Size, ct).ConfigureAwait(false);
                    lock (written)
                    {
                        written.Add(item.Local);
                    }
                }

                var bytes = Interlocked.Add(ref done, item.Remote.Size);
                var files = Interlocked.Increment(ref filesDone);
                progress?.Report(new TransferProgress(bytes, total, files, present.Count, item.Output));
            }).ConfigureAwait(false);
        fetchState[folder] = new FetchRecord { Signature = signature, Files = present.ToDictionary(p => p.Output, p => p.Remote.Size) };
        _local.WriteJson(jobId, "fetched.json", fetchState);
        Log.Fetched(Logger, written.Count, jobId, skipped);
        return [.. written.Order(StringComparer.Ordinal)];
    }

    /// <inheritdoc />
    protected override async Task StopJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        var aborted = 0;
        foreach (var part in parts.Where(p => !QarnotStates.IsTerminal(p.Task.State)))
        {
            await _api.SendAsync(HttpMethod.Post, $"tasks/{part.Task.Uuid}/abort", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
            aborted++;
        }

        Log.Aborted(Logger, aborted, jobId);
    }

    /// <inheritdoc />
    protected override async Task RestartJobCoreAsync(string jobId, IReadOnlyCollection<string>? taskIds, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        var manifest = await ManifestAsync(jobId, parts, cancellationToken).ConfigureAwait(false);
        var view = JobView.Build(parts);
        List<ManifestTask> targets;
        if (taskIds is null)
        {
            targets = [.. manifest.Tasks.Where(t => view.Instance(t.Index).State is JobState.Failed or JobState.Cancelled)];
        }
        else
        {
            var unknown = taskIds.Where(id => manifest.Tasks.All(t => t.Id != id)).ToList();
            if (unknown.Count > 0)
            {
                throw new ArgumentException($"taskIds: job {jobId} has no task {string.Join(", ", unknown.Select(u => $"'{u}'"))}.", nameof(taskIds));
            }

            targets = [.. manifest.Tasks.Where(t => taskIds.Contains(t.Id))];
        }

        if (targets.Count == 0)
        {
            return;
        }

        // Parts that wait on a failed or cancelled part would never run: abort them, their instances run again below.
        var running = new List<Part>();
        foreach (var part in parts.Where(p => !QarnotStates.IsTerminal(p.Task.State)))
        {
            if (view.IsBlocked(part) || part.Indices.All(i => targets.Any(t => t.Index == i)))
            {
                await _api.SendAsync(HttpMethod.Post, $"tasks/{part.Task.Uuid}/abort", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
            }
            else
            {
                running.Add(part);
            }
        }

        var next = parts.Max(p => p.Number) + 1;
        var created = new List<Part>();
        foreach (var part in PlanParts([.. targets.Select(t => (t.Index, t.Level))]))
        {
            var dependsOn = created.Where(p => p.Level < part.Level).Concat(running.Where(p => p.Level < part.Level)).Select(p => p.Task.Uuid).Distinct().ToList();
            created.Add(await CreatePartAsync(manifest, jobId, next++, part.Level, part.Indices, dependsOn, cancellationToken).ConfigureAwait(false));
        }

        Log.Restarted(Logger, targets.Count, jobId);
    }

    /// <inheritdoc />
    protected override async Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var contextId = ParseJobId(jobId);
        var parts = await RequirePartsAsync(jobId, contextId, cancellationToken).ConfigureAwait(false);
        var view = JobView.Build(parts);
        if (!view.State.IsTerminal())
        {
            throw new FarmPluginException($"Job {jobId} is {view.State}; stop it before deleting it.", null, Name);
        }

        var manifest = await ManifestAsync(jobId, parts, cancellationToken).ConfigureAwait(false);
        foreach (var part in parts)
        {
            await _api.SendAsync(HttpMethod.Delete, $"tasks/{part.Task.Uuid}", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
        }

        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        await storage.DeletePrefixAsync(manifest.ResourceBucket, manifest.Prefix, cancellationToken).ConfigureAwait(false);
        await storage.DeleteBucketAsync(manifest.ResultBucket, cancellationToken).ConfigureAwait(false);
        _local.Delete(jobId);
    }

    /// <inheritdoc />
    protected override async Task<FarmTestReport> TestCoreAsync(CancellationToken cancellationToken)
    {
        var checks = new List<FarmTestCheck>();
        QarnotUserInfo? info = null;
        try
        {
            info = await _api.GetAsync<QarnotUserInfo>("info", cancellationToken).ConfigureAwait(false);
            checks.Add(new FarmTestCheck("token accepted", true, $"{_options.ApiUrl} knows the token (account {info.Email})"));
        }
        catch (FarmPluginException ex)
        {
            checks.Add(new FarmTestCheck("token accepted", false, ex.Message));
        }

        try
        {
            var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
            var buckets = await storage.CountBucketsAsync(cancellationToken).ConfigureAwait(false);
            checks.Add(new FarmTestCheck("storage reachable", true, $"{storage.Endpoint} lists {buckets} buckets"));
        }
        catch (FarmPluginException ex)
        {
            checks.Add(new FarmTestCheck("storage reachable", false, ex.Message));
        }

        try
        {
            var profile = await _api.SendAsync(HttpMethod.Get, $"profiles/{Uri.EscapeDataString(_options.Profile)}", null, cancellationToken, allowNotFound: true).ConfigureAwait(false);
            checks.Add(profile.NotFound
                ? new FarmTestCheck("profile exists", false, $"the account has no profile '{_options.Profile}' (setting Profile)")
                : new FarmTestCheck("profile exists", true, _options.Profile));
        }
        catch (FarmPluginException ex)
        {
            checks.Add(new FarmTestCheck("profile exists", false, ex.Message));
        }

        if (info is not null)
        {
            var tasksLeft = info.MaxTask <= 0 || info.RunningTaskCount < info.MaxTask;
            checks.Add(new FarmTestCheck("quota left", tasksLeft,
                $"{info.RunningTaskCount} of {info.MaxTask} tasks in use, up to {info.MaxInstances} instances, {info.MaxBucket} buckets"));
        }

        return FarmTestReport.From(checks);
    }

    /// <inheritdoc />
    protected override ValueTask DisposeCoreAsync()
    {
        _api?.Dispose();
        _storage?.Dispose();
        _connectGate.Dispose();
        return ValueTask.CompletedTask;
    }

    internal string ResourceBucket => $"{_options.BucketPrefix}-resources";

    internal string ResultBucketOf(Guid contextId) => $"{_options.BucketPrefix}-results-{contextId:N}";

    internal static string ContextTag(Guid contextId) => $"farm-ctx-{contextId:N}";

    internal static string PartTag(Guid contextId, int number) => $"farm-part-{contextId:N}-{number.ToString(CultureInfo.InvariantCulture)}";

    private string FolderUri(Guid contextId) => $"s3://{ResourceBucket}/{contextId:D}/";

    private (string Bucket, string Prefix) CheckFolder(string folder, Guid contextId, string field)
    {
        if (!string.Equals(folder.TrimEnd('/') + "/", FolderUri(contextId), StringComparison.Ordinal))
        {
            throw new ArgumentException($"{field}: '{folder}' is not the Qarnot folder of render context {contextId} ({FolderUri(contextId)}): use what CreateTemporaryFolderAsync returned.", field);
        }

        return (ResourceBucket, $"{contextId:D}/");
    }

    private Guid ParseJobId(string jobId) =>
        jobId.StartsWith(JobIdPrefix, StringComparison.Ordinal) && Guid.TryParseExact(jobId[JobIdPrefix.Length..], "N", out var id)
            ? id
            : throw new JobNotFoundException(jobId, Name);

    private JobManifest BuildManifest(JobRequest request, string bucket, string prefix)
    {
        var byId = request.Tasks.ToDictionary(t => t.Id, StringComparer.Ordinal);
        var levels = new Dictionary<string, int>(StringComparer.Ordinal);
        int LevelOf(TaskSpec task) => levels.TryGetValue(task.Id, out var known) ? known
            : levels[task.Id] = (task.DependsOn ?? []).Select(d => LevelOf(byId[d]) + 1).DefaultIfEmpty(0).Max();
        return new JobManifest
        {
            ContextId = request.Context.Id,
            Name = request.Name,
            Submitter = request.Submitter ?? $"{Environment.UserName}@{Environment.MachineName}",
            SubmittedAt = TimeProvider.GetUtcNow(),
            ResourceBucket = bucket,
            Prefix = prefix,
            ResultBucket = ResultBucketOf(request.Context.Id),
            MaxAttempts = request.MaxAttempts,
            Labels = new Dictionary<string, string>(request.Labels),
            Tasks = [.. request.Tasks.Select((t, i) => new ManifestTask
            {
                Id = t.Id,
                Index = i,
                Level = LevelOf(t),
                DependsOn = [.. t.DependsOn ?? []],
                Outputs = [.. (t.Outputs ?? []).Select(o => o.Replace('\\', '/'))],
                Labels = t.Labels is null ? null : new Dictionary<string, string>(t.Labels),
            })],
        };
    }

    /// <summary>One Qarnot task per dependency level, split into chunks of at most MaxInstances instances.</summary>
    private List<(int Number, int Level, int[] Indices)> PlanParts(List<(int Index, int Level)> tasks)
    {
        var parts = new List<(int, int, int[])>();
        foreach (var level in tasks.GroupBy(t => t.Level).OrderBy(g => g.Key))
        {
            foreach (var chunk in level.Select(t => t.Index).Order().Chunk(_options.MaxInstances))
            {
                parts.Add((parts.Count, level.Key, chunk));
            }
        }

        return parts;
    }

    private async Task<Part> CreatePartAsync(JobManifest manifest, string jobId, int number, int level, int[] indices,
        IReadOnlyList<string> dependsOn, CancellationToken cancellationToken)
    {
        var ranges = InstanceRanges.Format(indices);
        var labels = new JsonObject
        {
            ["farm.context"] = manifest.ContextId.ToString("D"),
            ["farm.job"] = manifest.Name,
            ["farm.submitter"] = manifest.Submitter,
            ["farm.submitted"] = manifest.SubmittedAt.ToString("O", CultureInfo.InvariantCulture),
            ["farm.part"] = number.ToString(CultureInfo.InvariantCulture),
            ["farm.level"] = level.ToString(CultureInfo.InvariantCulture),
            ["farm.instances"] = ranges,
            ["farm.tasks"] = manifest.Tasks.Count.ToString(CultureInfo.InvariantCulture),
            ["farm.manifest"] = $"s3://{manifest.ResourceBucket}/{manifest.Prefix}{ManifestKey}",
        };
        foreach (var (key, value) in manifest.Labels)
        {
            labels["job." + key] = value;
        }

        var constants = new JsonArray
        {
            new JsonObject
            {
                ["key"] = "DOCKER_CMD",
                // Objects from S3 carry no execute bit: the staged tools get theirs back before the script runs.
                ["value"] = $"/bin/sh -c 'cd \"${{QARNOT_RESOURCES_DIRECTORY:-/job}}\" && {{ chmod -R u+x {ToolsFolder} 2>/dev/null; exec /bin/sh {ScriptKey}; }}'",
            },
        };
        if (_options.DockerImage is { } image)
        {
            var colon = image.LastIndexOf(':');
            var slash = image.LastIndexOf('/');
            var (repo, tag) = colon > slash ? (image[..colon], image[(colon + 1)..]) : (image, "latest");
            constants.Add(new JsonObject { ["key"] = "DOCKER_REPO", ["value"] = repo });
            constants.Add(new JsonObject { ["key"] = "DOCKER_TAG", ["value"] = tag });
        }

        var resources = new JsonArray
        {
            new JsonObject
            {
                ["bucketName"] = manifest.ResourceBucket,
                ["filtering"] = new JsonObject { ["prefixFiltering"] = new JsonObject { ["prefix"] = manifest.Prefix } },
                ["resourcesTransformation"] = new JsonObject { ["stripPrefix"] = new JsonObject { ["prefix"] = manifest.Prefix } },
            },
            // What earlier levels left (tiles for a merge) is in the result bucket: later instances see it in /job too.
            new JsonObject { ["bucketName"] = manifest.ResultBucket },
        };
        var retries = Math.Max(0, manifest.MaxAttempts - 1);
        var body = new JsonObject
        {
            ["name"] = $"{manifest.Name} [{number.ToString(CultureInfo.InvariantCulture)}]",
            ["profile"] = _options.Profile,
            ["advancedRanges"] = ranges,
            ["constants"] = constants,
            ["tags"] = new JsonArray(FarmTag, ContextTag(manifest.ContextId), PartTag(manifest.ContextId, number)),
            ["labels"] = labels,
            ["advancedResourceBuckets"] = resources,
            ["resultBucket"] = manifest.ResultBucket,
            ["retrySettings"] = new JsonObject { ["maxTotalRetries"] = retries * indices.Length, ["maxPerInstanceRetries"] = retries },
        };
        if (dependsOn.Count > 0)
        {
            body["dependencies"] = new JsonObject { ["dependsOn"] = new JsonArray([.. dependsOn.Select(d => (JsonNode)JsonValue.Create(d))]) };
        }

        var retried = false;
        var response = await _api.SendAsync(HttpMethod.Post, "tasks", body, cancellationToken, allowNotFound: true, beforeRetry: async ct =>
        {
            // A retried submit must not make a second task: the first may have been accepted before its answer was lost.
            retried = true;
            var found = await ListTasksAsync(PartTag(manifest.ContextId, number), ct).ConfigureAwait(false);
            return found.Count > 0 ? new ApiResponse(System.Net.HttpStatusCode.OK, $"{{\"uuid\":\"{found[0].Uuid}\"}}") : null;
        }).ConfigureAwait(false);
        if (response.NotFound)
        {
            throw new FarmPluginException(
                $"Qarnot: the submit of job {jobId} was refused as not found: the profile '{_options.Profile}' or a bucket ({manifest.ResourceBucket}, {manifest.ResultBucket}) does not exist ({QarnotJson.ErrorMessage(response.Body)}).",
                null, Name);
        }

        var uuid = QarnotJson.Parse<QarnotUuid>(response.Body)?.Uuid
            ?? throw new FarmPluginException($"Qarnot: the submit of job {jobId} answered no task uuid.", null, Name);
        if (retried)
        {
            Log.TaskFoundAfterRetry(Logger, number, jobId, uuid);
        }

        Log.TaskCreated(Logger, uuid, number, ranges, jobId);
        var task = new QarnotTask
        {
            Uuid = uuid,
            State = QarnotStates.Submitted,
            Labels = labels.ToDictionary(p => p.Key, p => p.Value!.GetValue<string>()),
        };
        return ToPart(task)!;
    }

    private async Task StageFarmToolsAsync(QarnotStorage storage, string bucket, string prefix, CancellationToken cancellationToken)
    {
        var executable = LocateFarmTools() ?? throw new FarmPluginException(
            "Qarnot: farm-tools (the framework's tile merger, staged with each job) was not found: build it (HostAdapters/FarmTools) or set the Qarnot setting FarmTools.",
            null, Name);
        // A self-contained single-file build is one file; a framework-dependent one brings its folder (and needs .NET in the image).
        var folder = Path.GetDirectoryName(executable)!;
        var files = File.Exists(Path.Combine(folder, FarmTools.ExecutableName + ".dll"))
            ? Directory.GetFiles(folder).Where(f => !f.EndsWith(".pdb", StringComparison.Ordinal) && !f.EndsWith(".xml", StringComparison.Ordinal)).ToList()
            : [executable];
        var keys = files.Select(f => (f, $"{prefix}{ToolsFolder}/{(f == executable ? FarmTools.ExecutableName : Path.GetFileName(f))}")).ToList();
        await storage.UploadAsync(bucket, $"{prefix}{ToolsFolder}/", keys, null, cancellationToken).ConfigureAwait(false);
    }

    private string? LocateFarmTools() => FarmTools.Locate(_options.FarmTools, typeof(QarnotPlugin).Assembly.Location);

    private async Task<JobManifest> ManifestAsync(string jobId, IReadOnlyList<Part> parts, CancellationToken cancellationToken)
    {
        var cached = _local.ReadJson<JobManifest>(jobId, "job.json");
        if (cached is not null)
        {
            return cached;
        }

        var location = parts.Select(p => p.Task.Label("farm.manifest")).FirstOrDefault(l => l is not null);
        if (location is null || !location.StartsWith("s3://", StringComparison.Ordinal) || location.IndexOf('/', 5) is var slash && slash < 0)
        {
            throw new FarmPluginException($"Qarnot: job {jobId} has no manifest label; it was not submitted by FarmPlugins.", null, Name);
        }

        var storage = await StorageAsync(cancellationToken).ConfigureAwait(false);
        var manifest = JobManifest.FromJson(await storage.GetTextAsync(location[5..slash], location[(slash + 1)..], cancellationToken).ConfigureAwait(false))
            ?? throw new FarmPluginException($"Qarnot: the manifest of job {jobId} ({location}) is missing.", null, Name);
        _local.WriteJson(jobId, "job.json", manifest);
        return manifest;
    }

    private async Task<List<Part>> RequirePartsAsync(string jobId, Guid contextId, CancellationToken cancellationToken)
    {
        var parts = await ListPartsAsync(contextId, cancellationToken).ConfigureAwait(false);
        return parts.Count == 0 ? throw new JobNotFoundException(jobId, Name) : parts;
    }

    private async Task<List<Part>> ListPartsAsync(Guid contextId, CancellationToken cancellationToken) =>
        [.. (await ListTasksAsync(ContextTag(contextId), cancellationToken).ConfigureAwait(false)).Select(ToPart).OfType<Part>()
            .Where(p => p.ContextId == contextId).OrderBy(p => p.Number)];

    private async Task<List<QarnotTask>> ListTasksAsync(string tag, CancellationToken cancellationToken)
    {
        var tasks = new List<QarnotTask>();
        string? token = null;
        for (var page = 0; page < 100_000; page++)
        {
            var body = new JsonObject { ["filter"] = QarnotJson.TagFilter(tag), ["token"] = token, ["maximumResults"] = 100 };
            var response = await _api.SendAsync(HttpMethod.Post, "tasks/paginate", body, cancellationToken).ConfigureAwait(false);
            var result = QarnotJson.Parse<QarnotPage>(response.Body);
            tasks.AddRange((result?.Data ?? []).Where(t => t.Tags?.Contains(tag, StringComparer.Ordinal) != false
                && !QarnotStates.Is(t.State, QarnotStates.PendingDelete)));
            if (result is null || !result.IsTruncated || string.IsNullOrEmpty(result.NextToken))
            {
                break;
            }

            token = result.NextToken;
        }

        return tasks;
    }

    private static Part? ToPart(QarnotTask task)
    {
        if (!Guid.TryParse(task.Label("farm.context"), out var contextId)
            || !int.TryParse(task.Label("farm.part"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var number))
        {
            return null;
        }

        _ = int.TryParse(task.Label("farm.level"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var level);
        _ = int.TryParse(task.Label("farm.tasks"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var total);
        return new Part(task, contextId, number, level, total, InstanceRanges.Parse(task.Label("farm.instances")));
    }

    private static Job ToJob(Guid contextId, JobView view)
    {
        var first = view.Parts[0].Task;
        var submitted = DateTimeOffset.TryParse(first.Label("farm.submitted"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var at)
            ? at : first.CreationDate ?? DateTimeOffset.UnixEpoch;
        var labels = first.Labels?.Where(p => p.Key.StartsWith("job.", StringComparison.Ordinal)).ToDictionary(p => p.Key[4..], p => p.Value);
        var properties = new Dictionary<string, string>
        {
            ["qarnot.tasks"] = string.Join(' ', view.Parts.Select(p => p.Task.Uuid)),
            ["qarnot.resultBucket"] = first.ResultBucket ?? string.Empty,
        };
        return new Job(JobIdPrefix + contextId.ToString("N"), first.Label("farm.job") ?? first.Name ?? string.Empty, view.State, view.Progress,
            submitted, view.StartedAt, view.State.IsTerminal() ? view.CompletedAt : null, contextId, first.Label("farm.submitter"), null, labels, properties);
    }

    private void ReadStorageUrl(string settingsBody)
    {
        if (_options.StorageUrl is not null)
        {
            _storageUrl = _options.StorageUrl;
            return;
        }

        var node = string.IsNullOrWhiteSpace(settingsBody) ? null : JsonNode.Parse(settingsBody) as JsonObject;
        var storage = node?.FirstOrDefault(p => string.Equals(p.Key, "storage", StringComparison.OrdinalIgnoreCase));
        if (storage is null || storage.Value.Key is null)
        {
            _storageUrl = new Uri(QarnotOptions.DefaultStorageUrl);
        }
        else if (storage.Value.Value is null)
        {
            _storageKnownMissing = true;
        }
        else
        {
            _storageUrl = new Uri(storage.Value.Value.GetValue<string>());
        }
    }

    private async Task<QarnotStorage> StorageAsync(CancellationToken cancellationToken)
    {
        if (_storage is { } ready)
        {
            return ready;
        }

        await _connectGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_storage is not null)
            {
                return _storage;
            }

            if (_storageUrl is null && !_storageKnownMissing)
            {
                ReadStorageUrl((await _api.SendAsync(HttpMethod.Get, "settings", null, cancellationToken).ConfigureAwait(false)).Body);
            }

            if (_storageUrl is null)
            {
                throw new FarmPluginException("Qarnot: this account has no storage (GET /settings answered storage null); set StorageUrl if it has one.", null, Name);
            }

            var info = await _api.GetAsync<QarnotUserInfo>("info", cancellationToken).ConfigureAwait(false);
            if (string.IsNullOrEmpty(info.Email))
            {
                throw new FarmPluginException("Qarnot: GET /info answered no email, which is the storage access key.", null, Name);
            }

            _storage = new QarnotStorage(_storageUrl, info.Email, _options.Token, _options.ForcePathStyle, _options.Transfers, _local.EtagCache, Name, _api.Redactor);
            Log.Connected(Logger, _options.ApiUrl.AbsoluteUri, _storageUrl.AbsoluteUri);
            return _storage;
        }
        finally
        {
            _connectGate.Release();
        }
    }

    private sealed class FetchRecord
    {
        public string Signature { get; set; } = string.Empty;

        public Dictionary<string, long> Files { get; set; } = [];
    }
}

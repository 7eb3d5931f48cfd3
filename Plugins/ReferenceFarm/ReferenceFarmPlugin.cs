using FarmApi;
using FarmApi.Hashing;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using ReferenceFarm.Protocol;
using Proto = ReferenceFarm.Protocol;

[assembly: FarmPlugin(typeof(FarmPlugins.ReferenceFarm.ReferenceFarmPlugin), "ReferenceFarm",
    Description = "The reference queue server and its render-node agents, over gRPC")]

namespace FarmPlugins.ReferenceFarm;

/// <summary>
/// The adapter for a ReferenceFarm server: jobs, tasks and logs over gRPC; render files and outputs through the
/// server's content-addressed blob store (only blobs the server lacks are sent).
/// </summary>
public sealed class ReferenceFarmPlugin : BaseFarmPlugin
{
    /// <summary>The setting naming the server's URL.</summary>
    public const string AddressSetting = "Address";

    /// <summary>The setting holding the client token (secret).</summary>
    public const string TokenSetting = "Token";

    /// <summary>The setting naming a file that holds the client token (used when <see cref="TokenSetting"/> is not set).</summary>
    public const string TokenFileSetting = "TokenFile";

    /// <summary>The setting naming a PEM file with the server's CA certificate.</summary>
    public const string CaCertificateSetting = "CaCertificate";

    /// <summary>The setting bounding each call, in seconds.</summary>
    public const string CallTimeoutSetting = "CallTimeoutSeconds";

    private const string FolderScheme = "refarm://";
    private const int ChunkSize = 1 << 20;

    private GrpcChannel? _channel;
    private Jobs.JobsClient? _jobs;
    private Blobs.BlobsClient? _blobs;
    private Metadata _headers = [];
    private HashCache? _hashes;
    private TimeSpan _callTimeout = TimeSpan.FromSeconds(120);

    private Jobs.JobsClient JobsClient => _jobs ?? throw new InvalidOperationException("ReferenceFarm is not initialized.");

    private Blobs.BlobsClient BlobsClient => _blobs ?? throw new InvalidOperationException("ReferenceFarm is not initialized.");

    /// <inheritdoc/>
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() =>
    [
        new(AddressSetting, "The server's URL: http://127.0.0.1:50051 on this machine, https://HOST:PORT elsewhere.", DefaultValue: "http://127.0.0.1:50051"),
        new(TokenSetting, "A client token (the server writes client.token, or `server add-client NAME` makes one).", IsSecret: true),
        new(TokenFileSetting, "A file holding the client token, read when Token is not set (e.g. DATA/clients/NAME.token)."),
        new(CaCertificateSetting, "A PEM file with the server's CA certificate (DATA/tls/ca.pem on the server) for https."),
        new(CallTimeoutSetting, "The longest a call to the server may take, in seconds.", DefaultValue: "120"),
    ];

    /// <inheritdoc/>
    protected override ValueTask InitializeCoreAsync(CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        var addressText = Context.GetSetting(AddressSetting, "http://127.0.0.1:50051")!;
        if (!Uri.TryCreate(addressText, UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
        {
            errors.Add($"setting '{AddressSetting}' must be an http:// or https:// URL, not '{addressText}'");
        }

        var token = Context.GetSetting(TokenSetting);
        var tokenFile = Context.GetSetting(TokenFileSetting);
        if (string.IsNullOrWhiteSpace(token) && !string.IsNullOrWhiteSpace(tokenFile))
        {
            try
            {
                token = File.ReadAllText(tokenFile).Trim();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                errors.Add($"setting '{TokenFileSetting}': cannot read '{tokenFile}' ({ex.GetType().Name})");
                token = null;
            }
        }

        if (string.IsNullOrWhiteSpace(token) && errors.Count == 0)
        {
            errors.Add($"setting '{TokenSetting}' (or '{TokenFileSetting}') is required: a client token from the server's data folder");
        }

        var ca = Context.GetSetting(CaCertificateSetting);
        if (ca is not null && !File.Exists(ca))
        {
            errors.Add($"setting '{CaCertificateSetting}': '{ca}' does not exist");
        }

        var seconds = Context.GetInt32Setting(CallTimeoutSetting, 120);
        if (seconds < 1)
        {
            errors.Add($"setting '{CallTimeoutSetting}' must be at least 1");
        }

        if (errors.Count > 0)
        {
            throw new FarmPluginException($"{Name}: {string.Join("; ", errors)}.", null, Name);
        }

        _callTimeout = TimeSpan.FromSeconds(seconds);
        _channel = FarmChannel.Create(address!, ca);
        _jobs = new Jobs.JobsClient(_channel);
        _blobs = new Blobs.BlobsClient(_channel);
        _headers = FarmChannel.Bearer(token!.Trim());
        _hashes = new HashCache(Path.Combine(Context.DataDirectory, "hash-cache.txt"));
        return ValueTask.CompletedTask;
    }

    private DateTime Deadline => DateTime.UtcNow + _callTimeout;

    private async Task<T> CallAsync<T>(Func<CallOptions, AsyncUnaryCall<T>> call, string? jobId, CancellationToken cancellationToken)
    {
        try
        {
            return await call(new CallOptions(_headers, Deadline, cancellationToken)).ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw Translate(ex, jobId, cancellationToken);
        }
    }

    private Exception Translate(RpcException ex, string? jobId, CancellationToken cancellationToken)
    {
        if (ex.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
        {
            return new OperationCanceledException(cancellationToken);
        }

        var detail = Redactor.Redact(ex.Status.Detail);
        if (detail.Contains("SSL connection could not be established", StringComparison.Ordinal))
        {
            return new FarmPluginException(
                $"{Name}: the server's TLS certificate is not trusted; set '{CaCertificateSetting}' to the server's DATA/tls/ca.pem ({detail})", null, Name);
        }

        return ex.StatusCode switch
        {
            StatusCode.NotFound when jobId is not null && detail.StartsWith("No job", StringComparison.Ordinal) => new JobNotFoundException(jobId, Name),
            StatusCode.Unauthenticated => new FarmAuthenticationException($"{Name}: the server refused the token: {detail}", null, Name),
            StatusCode.PermissionDenied => new FarmAuthenticationException($"{Name}: {detail}", null, Name),
            StatusCode.Unavailable or StatusCode.DeadlineExceeded =>
                new FarmUnavailableException($"{Name}: the server cannot be reached now ({ex.StatusCode}): {detail}", null, Name),
            StatusCode.InvalidArgument => new ArgumentException($"{Name}: the server refused the request: {detail}"),
            _ => new FarmPluginException($"{Name}: {ex.StatusCode}: {detail}", null, Name),
        };
    }

    /// <inheritdoc/>
    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken) =>
        Task.FromResult($"{FolderScheme}{context.Id:D}/");

    /// <inheritdoc/>
    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await CopyOnceAsync(context, files, progress, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition && attempt < 3)
            {
                // A blob the server reported present was removed before it was staged (another client deleted the last job
                // that used it): ask again, and upload what is missing now.
            }
            catch (RpcException ex)
            {
                throw Translate(ex, null, cancellationToken);
            }
        }
    }

    private async Task<IReadOnlyList<string>> CopyOnceAsync(RenderContext context, IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress,
        CancellationToken cancellationToken)
    {
        var entries = new List<FileEntry>(files.Count);
        foreach (var file in files)
        {
            var hash = await _hashes!.GetHashAsync(file.LocalPath, cancellationToken).ConfigureAwait(false);
            entries.Add(new FileEntry { RelativePath = Store(file.RelativePath), Hash = hash, Size = new FileInfo(file.LocalPath).Length });
        }

        await _hashes!.SaveAsync(cancellationToken).ConfigureAwait(false);
        var missing = new HashSet<string>(StringComparer.Ordinal);
        foreach (var batch in entries.Select(e => e.Hash).Distinct(StringComparer.Ordinal).Chunk(2000))
        {
            var request = new FindMissingRequest();
            request.Hashes.Add(batch);
            var reply = await CallAsync(o => BlobsClient.FindMissingAsync(request, o), null, cancellationToken).ConfigureAwait(false);
            missing.UnionWith(reply.Missing);
        }

        // Only the missing content travels; files already on the server count as done at once.
        var total = entries.Sum(e => e.Size);
        var done = entries.Where(e => !missing.Contains(e.Hash)).Sum(e => e.Size);
        var filesDone = entries.Count(e => !missing.Contains(e.Hash));
        progress?.Report(new TransferProgress(done, total, filesDone, entries.Count, null));
        var sent = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < files.Count; i++)
        {
            var entry = entries[i];
            if (!missing.Contains(entry.Hash))
            {
                continue;
            }

            if (sent.Add(entry.Hash))
            {
                await UploadAsync(files[i].LocalPath, entry.Hash, bytes =>
                    progress?.Report(new TransferProgress(done + bytes, total, filesDone, entries.Count, files[i].RelativePath)), cancellationToken)
                    .ConfigureAwait(false);
            }

            done += entry.Size;
            filesDone++;
            progress?.Report(new TransferProgress(done, total, filesDone, entries.Count, files[i].RelativePath));
        }

        foreach (var batch in entries.Chunk(5000))
        {
            var stage = new StageFilesRequest { ContextId = context.Id.ToString("D") };
            stage.Files.Add(batch);
            // Called directly: the caller retries a FailedPrecondition (a blob removed meanwhile).
            await JobsClient.StageFilesAsync(stage, new CallOptions(_headers, Deadline, cancellationToken)).ResponseAsync.ConfigureAwait(false);
        }

        return entries.Select(e => $"{FolderScheme}{context.Id:D}/{e.RelativePath}").ToList();
    }

    private static string Store(string relativePath)
    {
        // The server keys job-folder paths with '/' and no leading "./" (the wrapper already refused absolute and ".." paths).
        var path = relativePath.Replace('\\', '/');
        while (path.StartsWith("./", StringComparison.Ordinal))
        {
            path = path[2..];
        }

        return path;
    }

    private async Task UploadAsync(string path, string hash, Action<long> onBytes, CancellationToken cancellationToken)
    {
        try
        {
            using var call = BlobsClient.Upload(new CallOptions(_headers, Deadline, cancellationToken));
            var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
            await using (file.ConfigureAwait(false))
            {
                var buffer = new byte[ChunkSize];
                long bytes = 0;
                var first = true;
                int read;
                while ((read = await file.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0 || first)
                {
                    await call.RequestStream.WriteAsync(new BlobChunk { Hash = first ? hash : string.Empty, Data = ByteString.CopyFrom(buffer, 0, read) },
                        cancellationToken).ConfigureAwait(false);
                    first = false;
                    bytes += read;
                    onBytes(bytes);
                    if (read == 0)
                    {
                        break;
                    }
                }
            }

            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            await call.ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DataLoss)
        {
            throw new FarmPluginException($"{Name}: '{path}' changed while it was uploaded: {ex.Status.Detail}", null, Name);
        }
        catch (RpcException ex)
        {
            throw Translate(ex, null, cancellationToken);
        }
    }

    /// <inheritdoc/>
    protected override async Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken)
    {
        var found = await CallAsync(o => JobsClient.GetInstallationAsync(new GetInstallationRequest { Host = host }, o), null, cancellationToken)
            .ConfigureAwait(false);
        // The executable is the bare host name: every agent maps it to its own installation, so mixed nodes work.
        return found.Known
            ? new InstallationMetadata(host, found.Version.Length > 0 ? found.Version : "unknown", host,
                found.Executable.Length > 0 && Path.IsPathRooted(found.Executable) ? Path.GetDirectoryName(found.Executable) : null,
                found.Platform.Length > 0 ? found.Platform : null)
            : new InstallationMetadata(host, "unknown", host);
    }

    /// <inheritdoc/>
    protected override async Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var submit = new SubmitRequest
        {
            ContextId = request.Context.Id.ToString("D"), RenderType = request.Context.Type.ToString(), ContextName = request.Context.Name,
            Name = request.Name, Priority = request.Priority, MaxAttempts = request.MaxAttempts,
            Submitter = request.Submitter ?? $"{Environment.UserName}@{Environment.MachineName}",
        };
        submit.Files.Add(request.Files.Select(Store));
        submit.Environment.Add(request.Environment.ToDictionary());
        submit.Labels.Add(request.Labels.ToDictionary());
        submit.Settings.Add(request.Settings.ToDictionary());
        foreach (var task in request.Tasks)
        {
            var spec = new Proto.TaskSpec
            {
                Id = task.Id, Host = task.Host, TimeoutMs = task.Timeout is { } timeout ? (long)Math.Ceiling(timeout.TotalMilliseconds) : 0,
            };
            foreach (var command in task.Commands)
            {
                // A bare host name ("povray") stays bare: the agent that runs the task maps it to its own installation.
                var protoCommand = new Proto.Command { Executable = command.Executable };
                protoCommand.Arguments.Add(command.Arguments);
                spec.Commands.Add(protoCommand);
            }

            spec.DependsOn.Add(task.DependsOn ?? []);
            spec.Outputs.Add((task.Outputs ?? []).Select(Store));
            if (task.Labels is not null)
            {
                spec.Labels.Add(task.Labels.ToDictionary());
            }

            submit.Tasks.Add(spec);
        }

        var reply = await CallAsync(o => JobsClient.SubmitAsync(submit, o), null, cancellationToken).ConfigureAwait(false);
        return reply.JobId;
    }

    /// <inheritdoc/>
    protected override async Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken)
    {
        var request = new GetJobsRequest
        {
            State = query.State is { } state ? (int)state : -1, ContextId = query.RenderContextId?.ToString("D") ?? string.Empty,
            Submitter = query.Submitter ?? string.Empty, Limit = query.Limit ?? 0,
        };
        var reply = await CallAsync(o => JobsClient.GetJobsAsync(request, o), null, cancellationToken).ConfigureAwait(false);
        return reply.Jobs.Select(ToJob).ToList();
    }

    /// <inheritdoc/>
    protected override async Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        ToJob(await CallAsync(o => JobsClient.GetJobAsync(new JobIdRequest { JobId = jobId }, o), jobId, cancellationToken).ConfigureAwait(false));

    private static DateTimeOffset? Time(long ms) => ms == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(ms);

    private static Job ToJob(JobInfo job) => new(
        job.Id, job.Name, (JobState)job.State, new JobProgress(job.Total, job.Completed, job.Running, job.Failed),
        DateTimeOffset.FromUnixTimeMilliseconds(job.SubmittedAtMs), Time(job.StartedAtMs), Time(job.CompletedAtMs),
        Guid.TryParse(job.ContextId, out var context) ? context : null, job.Submitter, null,
        job.Labels.ToDictionary(),
        new Dictionary<string, string>(StringComparer.Ordinal) { ["owner"] = job.Owner, ["priority"] = job.Priority.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    /// <inheritdoc/>
    protected override async Task<IReadOnlyList<FarmApi.TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        var tasks = new List<FarmApi.TaskInfo>();
        try
        {
            using var call = JobsClient.GetTasks(new JobIdRequest { JobId = jobId }, new CallOptions(_headers, Deadline, cancellationToken));
            while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                var task = call.ResponseStream.Current;
                tasks.Add(new FarmApi.TaskInfo(task.Id, (JobState)task.State, task.Attempts, task.Node.Length > 0 ? task.Node : null,
                    task.HasExitCode ? task.ExitCode : null, Time(task.StartedAtMs), Time(task.CompletedAtMs),
                    task.Labels.Count > 0 ? task.Labels.ToDictionary() : null));
            }
        }
        catch (RpcException ex)
        {
            throw Translate(ex, jobId, cancellationToken);
        }

        return tasks;
    }

    /// <inheritdoc/>
    protected override Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken) =>
        ReadLogAsync(jobId, string.Empty, offset, cancellationToken);

    /// <inheritdoc/>
    protected override Task<LogChunk> ReadTaskLogCoreAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken) =>
        ReadLogAsync(jobId, taskId, offset, cancellationToken);

    private async Task<LogChunk> ReadLogAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken)
    {
        var reply = await CallAsync(o => JobsClient.ReadLogAsync(new ReadLogRequest { JobId = jobId, TaskId = taskId, Offset = offset }, o), jobId,
            cancellationToken).ConfigureAwait(false);
        return new LogChunk(reply.Text.ToStringUtf8(), reply.NextOffset, reply.Complete);
    }

    /// <inheritdoc/>
    protected override async Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder, IProgress<TransferProgress>? progress,
        CancellationToken cancellationToken)
    {
        var reply = await CallAsync(o => JobsClient.ListOutputsAsync(new JobIdRequest { JobId = jobId }, o), jobId, cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(localFolder);
        var written = new List<string>();
        var total = reply.Outputs.Sum(o => o.Size);
        long done = 0;
        var count = 0;
        foreach (var output in reply.Outputs)
        {
            var destination = JobPaths.ResolveInside(localFolder, output.RelativePath, "output");
            count++;
            if (File.Exists(destination) && new FileInfo(destination).Length == output.Size
                && await ContentHash.ComputeFileAsync(destination, cancellationToken).ConfigureAwait(false) == output.Hash)
            {
                done += output.Size;
                progress?.Report(new TransferProgress(done, total, count, reply.Outputs.Count, output.RelativePath));
                continue;
            }

            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            var temporary = destination + $".{Guid.NewGuid():N}.part";
            try
            {
                using var call = BlobsClient.Download(new DownloadRequest { Hash = output.Hash }, new CallOptions(_headers, Deadline, cancellationToken));
                var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
                await using (file.ConfigureAwait(false))
                {
                    while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                    {
                        var data = call.ResponseStream.Current.Data.Memory;
                        await file.WriteAsync(data, cancellationToken).ConfigureAwait(false);
                        done += data.Length;
                        progress?.Report(new TransferProgress(done, total, count - 1, reply.Outputs.Count, output.RelativePath));
                    }
                }

                if (await ContentHash.ComputeFileAsync(temporary, cancellationToken).ConfigureAwait(false) != output.Hash)
                {
                    throw new FarmPluginException($"{Name}: output '{output.RelativePath}' arrived damaged (hash mismatch).", null, Name);
                }

                File.Move(temporary, destination, overwrite: true);
            }
            catch (RpcException ex)
            {
                throw Translate(ex, jobId, cancellationToken);
            }
            finally
            {
                if (File.Exists(temporary))
                {
                    File.Delete(temporary);
                }
            }

            written.Add(destination);
            progress?.Report(new TransferProgress(done, total, count, reply.Outputs.Count, output.RelativePath));
        }

        return written;
    }

    /// <inheritdoc/>
    protected override Task StopJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        CallAsync(o => JobsClient.StopJobAsync(new JobIdRequest { JobId = jobId }, o), jobId, cancellationToken);

    /// <inheritdoc/>
    protected override Task RestartJobCoreAsync(string jobId, IReadOnlyCollection<string>? taskIds, CancellationToken cancellationToken)
    {
        var request = new RestartJobRequest { JobId = jobId };
        request.TaskIds.Add(taskIds ?? []);
        return CallAsync(o => JobsClient.RestartJobAsync(request, o), jobId, cancellationToken);
    }

    /// <inheritdoc/>
    protected override Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        CallAsync(o => JobsClient.DeleteJobAsync(new JobIdRequest { JobId = jobId }, o), jobId, cancellationToken);

    /// <inheritdoc/>
    protected override async Task<FarmTestReport> TestCoreAsync(CancellationToken cancellationToken)
    {
        var checks = new List<FarmTestCheck>();
        try
        {
            var ping = await CallAsync(o => JobsClient.PingAsync(new PingRequest(), o), null, cancellationToken).ConfigureAwait(false);
            checks.Add(new FarmTestCheck("server", true, $"reachable, version {ping.ServerVersion}"));
            checks.Add(new FarmTestCheck("token", true, $"accepted as client '{ping.Caller}'{(ping.Admin ? " (admin)" : string.Empty)}"));
            checks.Add(new FarmTestCheck("agents", ping.Agents > 0,
                ping.Agents > 0 ? $"{ping.Agents} agent(s) seen recently" : "no agent seen recently: jobs will wait until one connects"));
        }
        catch (FarmAuthenticationException ex)
        {
            checks.Add(new FarmTestCheck("server", true, "reachable"));
            checks.Add(new FarmTestCheck("token", false, ex.Message));
        }
        catch (FarmPluginException ex)
        {
            checks.Add(new FarmTestCheck("server", false, ex.Message));
        }

        return new FarmTestReport(checks.All(c => c.Passed), checks);
    }

    /// <inheritdoc/>
    protected override ValueTask DisposeCoreAsync()
    {
        _channel?.Dispose();
        return ValueTask.CompletedTask;
    }
}

using System.Diagnostics;
using System.Reflection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmApi;

/// <summary>
/// The base class a farm vendor subclasses: Katana's <c>BaseFarmPlugin</c> for .NET.
/// </summary>
/// <remarks>
/// Public entry points are non-virtual: they validate arguments, log with the plug-in's name and the render context,
/// enforce capabilities and wrap unexpected adapter failures in <see cref="FarmPluginException"/> (a
/// <see cref="FarmPluginException"/> from the adapter passes as it is; <see cref="OperationCanceledException"/> is never
/// wrapped). Adapters override the protected <c>...CoreAsync</c> hooks: the abstract ones are required, each virtual one
/// is an optional capability. One instance serves one host process and may be called from several threads at once.
/// </remarks>
public abstract class BaseFarmPlugin : IAsyncDisposable
{
    private static readonly (FarmCapabilities Capability, string Hook)[] OptionalHooks =
    [
        (FarmCapabilities.CopyFiles, nameof(CopyRenderFilesCoreAsync)),
        (FarmCapabilities.RenderLog, nameof(ReadRenderLogCoreAsync)),
        (FarmCapabilities.Stop, nameof(StopJobCoreAsync)),
        (FarmCapabilities.Restart, nameof(RestartJobCoreAsync)),
        (FarmCapabilities.Test, nameof(TestCoreAsync)),
        (FarmCapabilities.TaskDetails, nameof(GetTasksCoreAsync)),
        (FarmCapabilities.TaskLog, nameof(ReadTaskLogCoreAsync)),
        (FarmCapabilities.FetchOutputs, nameof(FetchOutputsCoreAsync)),
        (FarmCapabilities.Delete, nameof(DeleteJobCoreAsync)),
    ];

    private readonly FarmCapabilities _declaredCapabilities;
    private FarmPluginContext? _context;
    private ILogger _logger = NullLogger.Instance;
    private SecretRedactor _redactor = SecretRedactor.None;
    private FarmCapabilities _capabilities;
    private int _disposed;

    /// <summary>Makes the plug-in; the host initializes it with <see cref="InitializeAsync"/> before any other call.</summary>
    protected BaseFarmPlugin()
    {
        _declaredCapabilities = DeclaredCapabilities(GetType());
        _capabilities = _declaredCapabilities;
    }

    /// <summary>The registered name (the <see cref="FarmPluginAttribute"/> name); the class name before initialization.</summary>
    public string Name => _context?.PluginName ?? GetType().Name;

    /// <summary>What the host gave at initialization.</summary>
    /// <exception cref="InvalidOperationException">The plug-in is not initialized.</exception>
    public FarmPluginContext Context => _context ?? throw new InvalidOperationException($"{GetType().Name} is not initialized: call InitializeAsync first.");

    /// <summary>Whether <see cref="InitializeAsync"/> has completed.</summary>
    public bool IsInitialized => _context is not null;

    /// <summary>The optional operations this plug-in supports: the hooks it overrides, narrowed after initialization.</summary>
    public FarmCapabilities Capabilities => _capabilities;

    /// <summary>The logger adapters write to; a null logger before initialization.</summary>
    protected ILogger Logger => _logger;

    /// <summary>Hides the plug-in's secret settings in text.</summary>
    protected SecretRedactor Redactor => _redactor;

    /// <summary>The clock.</summary>
    protected TimeProvider TimeProvider => _context?.TimeProvider ?? TimeProvider.System;

    /// <summary>The capabilities a plug-in type declares by overriding optional hooks, before any run-time narrowing.</summary>
    /// <param name="pluginType">A <see cref="BaseFarmPlugin"/> subclass.</param>
    /// <returns>The capabilities.</returns>
    public static FarmCapabilities DeclaredCapabilities(Type pluginType)
    {
        ArgumentNullException.ThrowIfNull(pluginType);
        var capabilities = FarmCapabilities.None;
        foreach (var (capability, hook) in OptionalHooks)
        {
            var method = pluginType.GetMethod(hook, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public);
            if (method is not null && method.GetBaseDefinition().DeclaringType == typeof(BaseFarmPlugin)
                && method.DeclaringType != typeof(BaseFarmPlugin))
            {
                capabilities |= capability;
            }
        }

        return capabilities;
    }

    /// <summary>The settings this plug-in reads, with secrets marked.</summary>
    /// <returns>The descriptors.</returns>
    public IReadOnlyList<SettingDescriptor> GetSettingDescriptors() => DescribeSettingsCore() ?? [];

    /// <summary>Gives the plug-in its context and lets it prepare; called once, before anything else.</summary>
    /// <param name="context">The context.</param>
    /// <param name="cancellationToken">Cancels the initialization.</param>
    /// <returns>A task that completes when the plug-in is ready.</returns>
    /// <exception cref="InvalidOperationException">The plug-in is already initialized.</exception>
    public async ValueTask InitializeAsync(FarmPluginContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentException.ThrowIfNullOrWhiteSpace(context.PluginName);
        ArgumentNullException.ThrowIfNull(context.LoggerFactory);
        ArgumentNullException.ThrowIfNull(context.Settings);
        ArgumentException.ThrowIfNullOrWhiteSpace(context.DataDirectory);
        if (Interlocked.CompareExchange(ref _context, context, null) is not null)
        {
            throw new InvalidOperationException($"{context.PluginName} is already initialized.");
        }

        _logger = context.LoggerFactory.CreateLogger(GetType());
        _redactor = SecretRedactor.ForSettings(GetSettingDescriptors(), context.Settings);
        try
        {
            await InitializeCoreAsync(cancellationToken).ConfigureAwait(false);
            _capabilities = _declaredCapabilities & GetRuntimeCapabilitiesCore();
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not FarmPluginException)
        {
            _context = null;
            var message = _redactor.Redact($"{context.PluginName}: initialization failed: {ex.Message}");
            Log.OperationFailed(_logger, context.PluginName, "Initialize", message);
            throw new FarmPluginException(message, _redactor.Sanitize(ex), context.PluginName);
        }
        catch
        {
            _context = null;
            throw;
        }

        Log.Initialized(_logger, context.PluginName, _capabilities);
    }

    /// <summary>Creates the job folder of a render context: a folder both the workstation and the render nodes reach.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The folder's path or URI, as the farm names it.</returns>
    public Task<string> CreateTemporaryFolderAsync(RenderContext context, CancellationToken cancellationToken = default)
    {
        ValidateRenderContext(context);
        return RunAsync(nameof(CreateTemporaryFolderAsync), context.Id, null, FarmCapabilities.None,
            async ct => NotEmpty(await CreateTemporaryFolderCoreAsync(context, ct).ConfigureAwait(false), "a temporary folder"),
            cancellationToken);
    }

    /// <summary>Copies the render files into the job folder, each to its relative path.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="temporaryFolder">The folder from <see cref="CreateTemporaryFolderAsync"/>.</param>
    /// <param name="files">The files to stage.</param>
    /// <param name="progress">Receives transfer progress.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>In order, where each file now is for the farm (a node path or a URI).</returns>
    /// <exception cref="ArgumentException">A relative path is absolute or climbs out, two files share a relative path, or a local file does not exist.</exception>
    public Task<IReadOnlyList<string>> CopyRenderFilesAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ValidateRenderContext(context);
        ArgumentException.ThrowIfNullOrWhiteSpace(temporaryFolder);
        ArgumentNullException.ThrowIfNull(files);
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        var exists = FilesExist(files);
        for (var i = 0; i < files.Count; i++)
        {
            var file = files[i] ?? throw new ArgumentException($"files[{i}] is null.", nameof(files));
            var reason = JobPaths.Check(file.RelativePath);
            if (reason is not null)
            {
                throw new ArgumentException($"files[{i}].RelativePath: {reason}.", nameof(files));
            }

            if (string.IsNullOrWhiteSpace(file.LocalPath))
            {
                throw new ArgumentException($"files[{i}].LocalPath is empty.", nameof(files));
            }

            if (!exists[i])
            {
                throw new ArgumentException($"files[{i}].LocalPath: '{file.LocalPath}' does not exist or is not a file.", nameof(files));
            }

            var key = file.RelativePath.Replace('\\', '/');
            if (seen.TryGetValue(key, out var other) && !string.Equals(other, Path.GetFullPath(file.LocalPath), StringComparison.Ordinal))
            {
                throw new ArgumentException($"files[{i}].RelativePath: '{file.RelativePath}' is the destination of two different files.", nameof(files));
            }

            seen[key] = Path.GetFullPath(file.LocalPath);
        }

        return RunAsync(nameof(CopyRenderFilesAsync), context.Id, null, FarmCapabilities.CopyFiles,
            ct => CopyRenderFilesCoreAsync(context, temporaryFolder, files, progress, ct), cancellationToken);
    }

    // Which local files exist, looked at by all cores when there are many (a second staging of a large tree is mostly
    // such looks and links); the errors are still reported in the list's order.
    private static bool[] FilesExist(IReadOnlyList<RenderFile> files)
    {
        var exists = new bool[files.Count];
        void Look(int i) => exists[i] = files[i] is { LocalPath: { } path } && !string.IsNullOrWhiteSpace(path) && File.Exists(path);
        if (files.Count < 256)
        {
            for (var i = 0; i < files.Count; i++)
            {
                Look(i);
            }
        }
        else
        {
            Parallel.For(0, files.Count, Look);
        }

        return exists;
    }

    /// <summary>Where a host's software lives on the render nodes.</summary>
    /// <param name="host">The host name: <c>povray</c>, <c>blender</c>, <c>farm-tools</c>, <c>command</c>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The installation metadata.</returns>
    public Task<InstallationMetadata> GetInstallationMetadataAsync(string host, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        return RunAsync(nameof(GetInstallationMetadataAsync), null, null, FarmCapabilities.None,
            async ct => await GetInstallationMetadataCoreAsync(host, ct).ConfigureAwait(false)
                ?? throw new FarmPluginException($"{Name} returned no installation metadata for '{host}'.", null, Name),
            cancellationToken);
    }

    /// <summary>Extra environment variables the farm wants every task of the render to have.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The variables.</returns>
    public Task<IReadOnlyDictionary<string, string>> GetJobEnvironmentAsync(RenderContext context, CancellationToken cancellationToken = default)
    {
        ValidateRenderContext(context);
        return RunAsync(nameof(GetJobEnvironmentAsync), context.Id, null, FarmCapabilities.None,
            async ct => await GetJobEnvironmentCoreAsync(context, ct).ConfigureAwait(false) ?? new Dictionary<string, string>(),
            cancellationToken);
    }

    /// <summary>Submits a job. Returns once the farm has durably accepted it; idempotent per render context.</summary>
    /// <param name="request">The job.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job id.</returns>
    /// <exception cref="ArgumentException">The request is invalid; the message names the field and the adapter is not called.</exception>
    public Task<string> SubmitJobAsync(JobRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var error = JobRequestValidator.FindError(request);
        if (error is not null)
        {
            Log.RequestRefused(_logger, Name, nameof(SubmitJobAsync), $"{error.Value.Field}: {error.Value.Reason}");
            throw new ArgumentException($"{error.Value.Field}: {error.Value.Reason}", error.Value.Field);
        }

        return RunAsync(nameof(SubmitJobAsync), request.Context.Id, null, FarmCapabilities.None, async ct =>
        {
            var jobId = NotEmpty(await SubmitJobCoreAsync(request, ct).ConfigureAwait(false), "a job id");
            Log.JobSubmitted(_logger, Name, jobId, request.Context.Id, request.Tasks.Count);
            return jobId;
        }, cancellationToken);
    }

    /// <summary>Lists jobs.</summary>
    /// <param name="query">Which jobs; all when null.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The jobs, newest first.</returns>
    public Task<IReadOnlyList<Job>> GetJobsAsync(JobQuery? query = null, CancellationToken cancellationToken = default)
    {
        query ??= new JobQuery();
        if (query.Limit is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(query), $"query.Limit must be at least 1, not {query.Limit}.");
        }

        return RunAsync(nameof(GetJobsAsync), query.RenderContextId, null, FarmCapabilities.None,
            async ct => await GetJobsCoreAsync(query, ct).ConfigureAwait(false) ?? [], cancellationToken);
    }

    /// <summary>Reads one job.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job.</returns>
    /// <exception cref="JobNotFoundException">No job has this id.</exception>
    public Task<Job> GetJobAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        return RunAsync(nameof(GetJobAsync), null, jobId, FarmCapabilities.None,
            async ct => await GetJobCoreAsync(jobId, ct).ConfigureAwait(false) ?? throw new JobNotFoundException(jobId, Name),
            cancellationToken);
    }

    /// <summary>Reads the tasks of a job.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>One entry per task, in the request's order.</returns>
    public Task<IReadOnlyList<TaskInfo>> GetTasksAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        return RunAsync(nameof(GetTasksAsync), null, jobId, FarmCapabilities.TaskDetails,
            async ct => await GetTasksCoreAsync(jobId, ct).ConfigureAwait(false) ?? [], cancellationToken);
    }

    /// <summary>Reads a job's render log from a byte offset.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="offset">Bytes of UTF-8 text already read.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The text from the offset, the next offset, and whether the log is complete.</returns>
    public Task<LogChunk> ReadRenderLogAsync(string jobId, long offset, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        return RunAsync(nameof(ReadRenderLogAsync), null, jobId, FarmCapabilities.RenderLog,
            async ct => CheckChunk(await ReadRenderLogCoreAsync(jobId, offset, ct).ConfigureAwait(false), offset), cancellationToken);
    }

    /// <summary>Reads one task's log from a byte offset.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskId">The task id.</param>
    /// <param name="offset">Bytes of UTF-8 text already read.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The text from the offset, the next offset, and whether the log is complete.</returns>
    public Task<LogChunk> ReadTaskLogAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        ArgumentException.ThrowIfNullOrWhiteSpace(taskId);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        return RunAsync(nameof(ReadTaskLogAsync), null, jobId, FarmCapabilities.TaskLog,
            async ct => CheckChunk(await ReadTaskLogCoreAsync(jobId, taskId, offset, ct).ConfigureAwait(false), offset), cancellationToken);
    }

    /// <summary>
    /// Copies the declared outputs of completed tasks into <paramref name="localFolder"/>, keeping relative paths and
    /// skipping files already there with the same content.
    /// </summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="localFolder">Where to put them.</param>
    /// <param name="progress">Receives transfer progress.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The local paths written.</returns>
    public Task<IReadOnlyList<string>> FetchOutputsAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        ArgumentException.ThrowIfNullOrWhiteSpace(localFolder);
        return RunAsync(nameof(FetchOutputsAsync), null, jobId, FarmCapabilities.FetchOutputs,
            async ct => await FetchOutputsCoreAsync(jobId, localFolder, progress, ct).ConfigureAwait(false) ?? [], cancellationToken);
    }

    /// <summary>Stops a job: its running tasks are killed and the job ends <see cref="JobState.Cancelled"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the farm has taken the order.</returns>
    public Task StopJobAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        return RunAsync(nameof(StopJobAsync), null, jobId, FarmCapabilities.Stop,
            async ct => { await StopJobCoreAsync(jobId, ct).ConfigureAwait(false); return true; }, cancellationToken);
    }

    /// <summary>Runs the failed and cancelled tasks of a job again (or the tasks named); completed tasks are kept.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskIds">The tasks to run again; the failed and cancelled ones when null.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the farm has taken the order.</returns>
    public Task RestartJobAsync(string jobId, IReadOnlyCollection<string>? taskIds = null, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        if (taskIds is not null && taskIds.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException("taskIds must not hold an empty id.", nameof(taskIds));
        }

        return RunAsync(nameof(RestartJobAsync), null, jobId, FarmCapabilities.Restart,
            async ct => { await RestartJobCoreAsync(jobId, taskIds, ct).ConfigureAwait(false); return true; }, cancellationToken);
    }

    /// <summary>Removes a terminal job and its staged files and outputs from the farm.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the job is gone.</returns>
    public Task DeleteJobAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        return RunAsync(nameof(DeleteJobAsync), null, jobId, FarmCapabilities.Delete,
            async ct => { await DeleteJobCoreAsync(jobId, ct).ConfigureAwait(false); return true; }, cancellationToken);
    }

    /// <summary>Checks that the farm is reachable and usable with the current settings.</summary>
    /// <param name="cancellationToken">Cancels the checks.</param>
    /// <returns>Each check and whether all passed.</returns>
    public Task<FarmTestReport> TestAsync(CancellationToken cancellationToken = default) =>
        RunAsync(nameof(TestAsync), null, null, FarmCapabilities.Test,
            async ct => await TestCoreAsync(ct).ConfigureAwait(false) ?? new FarmTestReport(false, []), cancellationToken);

    /// <summary>Releases the plug-in's resources; safe to call more than once.</summary>
    /// <returns>A task that completes when disposed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await DisposeCoreAsync().ConfigureAwait(false);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Prepares the plug-in once its <see cref="Context"/> is set; the default does nothing.</summary>
    /// <param name="cancellationToken">Cancels the initialization.</param>
    /// <returns>A task that completes when ready.</returns>
    protected virtual ValueTask InitializeCoreAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>The settings the plug-in reads; the default declares none.</summary>
    /// <returns>The descriptors.</returns>
    protected virtual IReadOnlyList<SettingDescriptor> DescribeSettingsCore() => [];

    /// <summary>Narrows the declared capabilities after initialization; the default keeps all.</summary>
    /// <returns>The capabilities available at run time.</returns>
    protected virtual FarmCapabilities GetRuntimeCapabilitiesCore() => (FarmCapabilities)~0;

    /// <summary>Creates the job folder. Required.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The folder's path or URI.</returns>
    protected abstract Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken);

    /// <summary>Copies render files. Optional: <see cref="FarmCapabilities.CopyFiles"/>.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="temporaryFolder">The job folder.</param>
    /// <param name="files">The files, already validated.</param>
    /// <param name="progress">Receives progress.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>Where each file now is for the farm.</returns>
    protected virtual Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.CopyFiles, nameof(CopyRenderFilesAsync));

    /// <summary>Where a host's software lives on the nodes. Required.</summary>
    /// <param name="host">The host name.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The metadata.</returns>
    protected abstract Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken);

    /// <summary>Extra environment variables for the render's tasks; the default is none.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The variables.</returns>
    protected virtual Task<IReadOnlyDictionary<string, string>> GetJobEnvironmentCoreAsync(RenderContext context, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyDictionary<string, string>>(new Dictionary<string, string>());

    /// <summary>Submits a validated request durably and idempotently per render context. Required.</summary>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job id.</returns>
    protected abstract Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken);

    /// <summary>Lists jobs. Required.</summary>
    /// <param name="query">Which jobs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The jobs, newest first.</returns>
    protected abstract Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken);

    /// <summary>Reads one job; throws <see cref="JobNotFoundException"/> for an unknown id. Required.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job.</returns>
    protected abstract Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken);

    /// <summary>Reads a job's tasks. Optional: <see cref="FarmCapabilities.TaskDetails"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The tasks.</returns>
    protected virtual Task<IReadOnlyList<TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.TaskDetails, nameof(GetTasksAsync));

    /// <summary>Reads the render log. Optional: <see cref="FarmCapabilities.RenderLog"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="offset">The byte offset.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The chunk.</returns>
    protected virtual Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.RenderLog, nameof(ReadRenderLogAsync));

    /// <summary>Reads a task log. Optional: <see cref="FarmCapabilities.TaskLog"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskId">The task id.</param>
    /// <param name="offset">The byte offset.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The chunk.</returns>
    protected virtual Task<LogChunk> ReadTaskLogCoreAsync(string jobId, string taskId, long offset, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.TaskLog, nameof(ReadTaskLogAsync));

    /// <summary>Fetches outputs. Optional: <see cref="FarmCapabilities.FetchOutputs"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="localFolder">Where to put them.</param>
    /// <param name="progress">Receives progress.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The local paths written.</returns>
    protected virtual Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.FetchOutputs, nameof(FetchOutputsAsync));

    /// <summary>Stops a job. Optional: <see cref="FarmCapabilities.Stop"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task.</returns>
    protected virtual Task StopJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.Stop, nameof(StopJobAsync));

    /// <summary>Restarts tasks. Optional: <see cref="FarmCapabilities.Restart"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskIds">The tasks named, or null for the failed and cancelled ones.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task.</returns>
    protected virtual Task RestartJobCoreAsync(string jobId, IReadOnlyCollection<string>? taskIds, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.Restart, nameof(RestartJobAsync));

    /// <summary>Deletes a job. Optional: <see cref="FarmCapabilities.Delete"/>.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task.</returns>
    protected virtual Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.Delete, nameof(DeleteJobAsync));

    /// <summary>Tests the farm. Optional: <see cref="FarmCapabilities.Test"/>.</summary>
    /// <param name="cancellationToken">Cancels the checks.</param>
    /// <returns>The report.</returns>
    protected virtual Task<FarmTestReport> TestCoreAsync(CancellationToken cancellationToken) =>
        throw NotSupported(FarmCapabilities.Test, nameof(TestAsync));

    /// <summary>Releases resources; the default does nothing.</summary>
    /// <returns>A task.</returns>
    protected virtual ValueTask DisposeCoreAsync() => ValueTask.CompletedTask;

    private FarmCapabilityException NotSupported(FarmCapabilities capability, string operation) => new(capability, operation, Name);

    private async Task<T> RunAsync<T>(string operation, Guid? renderContextId, string? jobId, FarmCapabilities required,
        Func<CancellationToken, Task<T>> core, CancellationToken cancellationToken)
    {
        if (_context is null)
        {
            throw new InvalidOperationException($"{GetType().Name} is not initialized: call InitializeAsync before {operation}.");
        }

        if (required != FarmCapabilities.None && (_capabilities & required) == 0)
        {
            Log.CapabilityMissing(_logger, Name, operation, required);
            throw NotSupported(required, operation);
        }

        cancellationToken.ThrowIfCancellationRequested();
        Log.OperationStarting(_logger, Name, operation, renderContextId, jobId);
        var started = Stopwatch.GetTimestamp();
        try
        {
            var result = await core(cancellationToken).ConfigureAwait(false);
            Log.OperationCompleted(_logger, Name, operation, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return result;
        }
        catch (OperationCanceledException)
        {
            throw;
        }
        catch (FarmPluginException ex)
        {
            Log.OperationFailed(_logger, Name, operation, _redactor.Redact(ex.Message));
            throw;
        }
        catch (Exception ex)
        {
            var message = _redactor.Redact($"{Name}: {operation} failed: {ex.Message}");
            Log.OperationFailed(_logger, Name, operation, message);
            throw new FarmPluginException(message, _redactor.Sanitize(ex), Name);
        }
    }

    private string NotEmpty(string? value, string what) =>
        string.IsNullOrWhiteSpace(value) ? throw new FarmPluginException($"{Name} returned no {what}.", null, Name) : value;

    private LogChunk CheckChunk(LogChunk? chunk, long offset)
    {
        if (chunk is null || chunk.NextOffset < offset)
        {
            throw new FarmPluginException($"{Name} returned a log chunk whose next offset is before {offset}.", null, Name);
        }

        return chunk;
    }

    private static void ValidateRenderContext(RenderContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Id == Guid.Empty)
        {
            throw new ArgumentException("context.Id must not be the empty UUID.", nameof(context));
        }
    }

    private static void ValidateJobId(string jobId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(jobId);
        if (jobId.Any(char.IsControl))
        {
            throw new ArgumentException("The job id contains a control character.", nameof(jobId));
        }
    }
}

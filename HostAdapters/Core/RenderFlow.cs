using System.Runtime.CompilerServices;
using FarmApi;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmPlugins.Hosts;

/// <summary>
/// Runs Katana's order for any host adapter and any plug-in: plan (collect dependencies) → render context →
/// <see cref="BaseFarmPlugin.CreateTemporaryFolderAsync"/> → <see cref="BaseFarmPlugin.CopyRenderFilesAsync"/> →
/// <see cref="BaseFarmPlugin.GetInstallationMetadataAsync"/> for each host the tasks need →
/// <see cref="BaseFarmPlugin.GetJobEnvironmentAsync"/> → tasks → <see cref="BaseFarmPlugin.SubmitJobAsync"/> →
/// follow → <see cref="BaseFarmPlugin.FetchOutputsAsync"/> (Disk) or fetch-and-delete (Preview).
/// </summary>
public sealed class RenderFlow
{
    private readonly BaseFarmPlugin _plugin;
    private readonly ILogger _logger;
    private readonly TimeProvider _timeProvider;

    /// <summary>Makes a flow on an initialized plug-in.</summary>
    /// <param name="plugin">The farm.</param>
    /// <param name="loggerFactory">Where the flow logs; none by default.</param>
    /// <param name="timeProvider">The clock for polling; the system clock by default.</param>
    public RenderFlow(BaseFarmPlugin plugin, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        _plugin = plugin;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<RenderFlow>();
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The farm this flow submits to.</summary>
    public BaseFarmPlugin Plugin => _plugin;

    /// <summary>Plans the render without touching the farm: dependency and setting errors surface here.</summary>
    /// <param name="job">What to render.</param>
    /// <param name="cancellationToken">Cancels the planning.</param>
    /// <returns>The plan.</returns>
    public async Task<RenderPlan> PlanAsync(RenderJob job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        job.Settings.Validate();
        if (!File.Exists(job.ScenePath))
        {
            throw new SceneException("the scene file does not exist", job.ScenePath);
        }

        var plan = await job.Adapter.PlanAsync(job.ScenePath, job.Settings, cancellationToken).ConfigureAwait(false);
        Log.Planned(_logger, job.ScenePath, job.Adapter.Name, plan.Files.Count, plan.FrameOutputs.Count);
        return plan;
    }

    /// <summary>Plans, stages and submits; returns once the farm has accepted the job.</summary>
    /// <param name="job">What to render.</param>
    /// <param name="transferProgress">Progress of the file copy.</param>
    /// <param name="cancellationToken">Cancels before submission.</param>
    /// <returns>The submission: job id, render context, plan, request.</returns>
    public async Task<RenderSubmission> SubmitAsync(RenderJob job, IProgress<TransferProgress>? transferProgress = null, CancellationToken cancellationToken = default)
    {
        var plan = await PlanAsync(job, cancellationToken).ConfigureAwait(false);
        return await SubmitPlanAsync(job, plan, transferProgress, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stages and submits a plan made by <see cref="PlanAsync"/>.</summary>
    /// <param name="job">What to render.</param>
    /// <param name="plan">Its plan.</param>
    /// <param name="transferProgress">Progress of the file copy.</param>
    /// <param name="cancellationToken">Cancels before submission.</param>
    /// <returns>The submission.</returns>
    public async Task<RenderSubmission> SubmitPlanAsync(RenderJob job, RenderPlan plan, IProgress<TransferProgress>? transferProgress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        ArgumentNullException.ThrowIfNull(plan);
        var name = job.Name ?? Path.GetFileNameWithoutExtension(job.ScenePath);
        var context = RenderContext.Create(name, job.Settings.Type);

        var folder = await _plugin.CreateTemporaryFolderAsync(context, cancellationToken).ConfigureAwait(false);
        Log.FolderCreated(_logger, context.Id, folder);

        var remoteFiles = await _plugin.CopyRenderFilesAsync(context, folder, plan.Files, transferProgress, cancellationToken).ConfigureAwait(false);
        Log.Staged(_logger, plan.Files.Count, context.Id);

        var installations = new Dictionary<string, InstallationMetadata>(StringComparer.OrdinalIgnoreCase);
        foreach (var host in plan.Hosts)
        {
            installations[host] = await _plugin.GetInstallationMetadataAsync(host, cancellationToken).ConfigureAwait(false);
        }

        var environment = await _plugin.GetJobEnvironmentAsync(context, cancellationToken).ConfigureAwait(false);
        var tasks = plan.CreateTasks(installations);
        var request = new JobRequest
        {
            Context = context,
            Name = name,
            Tasks = tasks,
            TemporaryFolder = folder,
            Files = [.. plan.Files.Select(f => f.RelativePath)],
            Installations = installations,
            Environment = environment,
            Priority = job.Priority,
            MaxAttempts = job.MaxAttempts,
            Submitter = job.Submitter,
            Labels = WithDefaults(job.Labels, job),
            Settings = job.FarmSettings,
        };

        var jobId = await _plugin.SubmitJobAsync(request, cancellationToken).ConfigureAwait(false);
        Log.Submitted(_logger, context.Id, jobId, tasks.Count);
        return new RenderSubmission(jobId, context, folder, plan, request, remoteFiles);
    }

    /// <summary>The request's labels: the caller's, plus <c>host</c> and <c>scene</c> unless the caller set them.</summary>
    private static Dictionary<string, string> WithDefaults(IReadOnlyDictionary<string, string> labels, RenderJob job)
    {
        var result = new Dictionary<string, string>(labels);
        result.TryAdd("host", job.Adapter.Name);
        result.TryAdd("scene", Path.GetFileName(job.ScenePath));
        return result;
    }

    /// <summary>
    /// Follows a job until it is terminal: yields the job each time its state or progress changes or its log grows
    /// (with the new log text), and ends after the terminal state and the rest of the log.
    /// </summary>
    /// <param name="jobId">The job.</param>
    /// <param name="pollInterval">How often to ask the farm; 500 ms by default.</param>
    /// <param name="cancellationToken">Stops following (the job keeps running).</param>
    /// <returns>The updates.</returns>
    public async IAsyncEnumerable<RenderUpdate> FollowAsync(string jobId, TimeSpan? pollInterval = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(500);
        var readLog = _plugin.Capabilities.HasFlag(FarmCapabilities.RenderLog);
        long offset = 0;
        Job? previous = null;
        while (true)
        {
            var job = await _plugin.GetJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            var logText = string.Empty;
            var logComplete = !readLog;
            if (readLog)
            {
                var chunk = await _plugin.ReadRenderLogAsync(jobId, offset, cancellationToken).ConfigureAwait(false);
                logText = chunk.Text;
                offset = chunk.NextOffset;
                logComplete = chunk.IsComplete;
            }

            if (previous is null || previous.State != job.State || previous.Progress != job.Progress || logText.Length > 0)
            {
                yield return new RenderUpdate(job, logText);
            }

            previous = job;
            if (job.State.IsTerminal() && (logComplete || logText.Length == 0))
            {
                Log.Ended(_logger, jobId, job.State);
                yield break;
            }

            if (logText.Length == 0)
            {
                await Task.Delay(interval, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Waits until the job is terminal.</summary>
    /// <param name="jobId">The job.</param>
    /// <param name="onUpdate">Called with each update (progress, log text).</param>
    /// <param name="pollInterval">How often to ask the farm.</param>
    /// <param name="cancellationToken">Stops waiting (the job keeps running).</param>
    /// <returns>The terminal job.</returns>
    public async Task<Job> WaitAsync(string jobId, Action<RenderUpdate>? onUpdate = null, TimeSpan? pollInterval = null, CancellationToken cancellationToken = default)
    {
        Job? last = null;
        await foreach (var update in FollowAsync(jobId, pollInterval, cancellationToken).ConfigureAwait(false))
        {
            onUpdate?.Invoke(update);
            last = update.Job;
        }

        return last ?? await _plugin.GetJobAsync(jobId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The whole render: submit, follow until terminal, then for a completed Disk render fetch the frames into
    /// <see cref="RenderJob.OutputFolder"/> (when set), and for a Preview fetch the one image (into the output folder,
    /// or a temporary folder) and delete the job's copy from the farm.
    /// </summary>
    /// <param name="job">What to render.</param>
    /// <param name="callbacks">Progress callbacks, all optional.</param>
    /// <param name="cancellationToken">Cancels (the job keeps running once submitted).</param>
    /// <returns>The result: the terminal job, the fetched files, the preview image.</returns>
    public async Task<RenderResult> RenderAsync(RenderJob job, RenderCallbacks? callbacks = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        callbacks ??= new RenderCallbacks();
        var submission = await SubmitAsync(job, callbacks.Transfer, cancellationToken).ConfigureAwait(false);
        callbacks.Submitted?.Invoke(submission);
        var final = await WaitAsync(submission.JobId, callbacks.Update, job.PollInterval, cancellationToken).ConfigureAwait(false);
        if (final.State != JobState.Completed)
        {
            return new RenderResult(submission, final, [], null);
        }

        if (job.Settings.Type == RenderType.Preview)
        {
            var folder = job.OutputFolder ?? Path.Combine(Path.GetTempPath(), "farm-preview-" + submission.Context.Id.ToString("N"));
            var fetched = await FetchAsync(submission.JobId, folder, callbacks.Fetch, cancellationToken).ConfigureAwait(false);
            var image = Path.Combine(folder, submission.Plan.Outputs[0]);
            if (_plugin.Capabilities.HasFlag(FarmCapabilities.Delete))
            {
                try
                {
                    await _plugin.DeleteJobAsync(submission.JobId, cancellationToken).ConfigureAwait(false);
                    Log.PreviewDeleted(_logger, submission.JobId);
                }
                catch (FarmPluginException e)
                {
                    Log.PreviewDeleteFailed(_logger, submission.JobId, e.Message);
                }
            }

            return new RenderResult(submission, final, fetched, File.Exists(image) ? image : null);
        }

        if (job.OutputFolder is not null)
        {
            var fetched = await FetchAsync(submission.JobId, job.OutputFolder, callbacks.Fetch, cancellationToken).ConfigureAwait(false);
            return new RenderResult(submission, final, fetched, null);
        }

        return new RenderResult(submission, final, [], null);
    }

    /// <summary>Fetches a job's outputs into a local folder (only missing or changed files are copied).</summary>
    /// <param name="jobId">The job.</param>
    /// <param name="folder">The local folder.</param>
    /// <param name="progress">Progress of the copy.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The local paths written.</returns>
    public async Task<IReadOnlyList<string>> FetchAsync(string jobId, string folder, IProgress<TransferProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(folder);
        var fetched = await _plugin.FetchOutputsAsync(jobId, folder, progress, cancellationToken).ConfigureAwait(false);
        Log.Fetched(_logger, jobId, fetched.Count, folder);
        return fetched;
    }
}

/// <summary>One render to run through <see cref="RenderFlow"/>.</summary>
public sealed record RenderJob
{
    /// <summary>The host adapter (see <see cref="HostAdapterRegistry.ForScene"/>).</summary>
    public required IHostAdapter Adapter { get; init; }

    /// <summary>The scene file on the workstation.</summary>
    public required string ScenePath { get; init; }

    /// <summary>How to render.</summary>
    public RenderSettings Settings { get; init; } = new();

    /// <summary>The job's name; the scene's file name without extension by default.</summary>
    public string? Name { get; init; }

    /// <summary>0 to 100, higher first.</summary>
    public int Priority { get; init; } = 50;

    /// <summary>Attempts per task.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Who submits; the farm's default when null.</summary>
    public string? Submitter { get; init; }

    /// <summary>Labels for people.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>Farm-specific request settings (pool, partition).</summary>
    public IReadOnlyDictionary<string, string> FarmSettings { get; init; } = new Dictionary<string, string>();

    /// <summary>Where <see cref="RenderFlow.RenderAsync"/> fetches the frames; null: not fetched (Disk) or a temporary folder (Preview).</summary>
    public string? OutputFolder { get; init; }

    /// <summary>How often to poll the farm while following.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>A job the farm accepted.</summary>
/// <param name="JobId">The farm's job id.</param>
/// <param name="Context">The render context.</param>
/// <param name="TemporaryFolder">The job folder from the plug-in.</param>
/// <param name="Plan">The plan.</param>
/// <param name="Request">The request submitted.</param>
/// <param name="RemoteFiles">Where each staged file is for the farm.</param>
public sealed record RenderSubmission(string JobId, RenderContext Context, string TemporaryFolder, RenderPlan Plan, JobRequest Request, IReadOnlyList<string> RemoteFiles);

/// <summary>A change seen while following a job.</summary>
/// <param name="Job">The job now.</param>
/// <param name="LogText">Render-log text new since the previous update (may be empty).</param>
public sealed record RenderUpdate(Job Job, string LogText);

/// <summary>The end of <see cref="RenderFlow.RenderAsync"/>.</summary>
/// <param name="Submission">The submission.</param>
/// <param name="Job">The terminal job.</param>
/// <param name="FetchedFiles">Local files written.</param>
/// <param name="PreviewImage">The preview image on the workstation (Preview renders).</param>
public sealed record RenderResult(RenderSubmission Submission, Job Job, IReadOnlyList<string> FetchedFiles, string? PreviewImage);

/// <summary>Optional callbacks of <see cref="RenderFlow.RenderAsync"/>.</summary>
public sealed class RenderCallbacks
{
    /// <summary>Progress of the staging copy.</summary>
    public IProgress<TransferProgress>? Transfer { get; init; }

    /// <summary>Called once the farm accepted the job (print the id here).</summary>
    public Action<RenderSubmission>? Submitted { get; init; }

    /// <summary>Called with each update while following.</summary>
    public Action<RenderUpdate>? Update { get; init; }

    /// <summary>Progress of the fetch.</summary>
    public IProgress<TransferProgress>? Fetch { get; init; }
}

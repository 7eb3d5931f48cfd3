using System.Collections.Concurrent;
using FarmApi;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmPlugins.Hosts.Tests.Flow;

/// <summary>
/// A minimal farm for flow tests: job folders on disk, tasks run by <see cref="LocalTaskRunner"/> in the background.
/// It records the order of the calls the host makes.
/// </summary>
public sealed class InlineFarm : BaseFarmPlugin
{
    private readonly string _root;
    private readonly ConcurrentDictionary<string, Entry> _jobs = new();

    public InlineFarm(string root) => _root = root;

    public List<string> Calls { get; } = [];

    public static async Task<InlineFarm> CreateAsync(string root)
    {
        var farm = new InlineFarm(root);
        await farm.InitializeAsync(new FarmPluginContext
        {
            PluginName = "Inline",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string>(),
            DataDirectory = root,
        });
        return farm;
    }

    public string JobFolder(string jobId) => _jobs[jobId].Request.TemporaryFolder;

    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        Record("CreateTemporaryFolder");
        var folder = Path.Combine(_root, context.Id.ToString("N"));
        Directory.CreateDirectory(folder);
        return Task.FromResult(folder);
    }

    protected override async Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        Record("CopyRenderFiles");
        var result = new List<string>();
        foreach (var file in files)
        {
            var target = JobPaths.ResolveInside(temporaryFolder, file.RelativePath);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            await using (var source = File.OpenRead(file.LocalPath))
            await using (var destination = File.Create(target))
            {
                await source.CopyToAsync(destination, cancellationToken);
            }

            result.Add(target);
            progress?.Report(new TransferProgress(0, 0, result.Count, files.Count, file.RelativePath));
        }

        return result;
    }

    protected override Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken)
    {
        Record("GetInstallationMetadata:" + host);
        return Task.FromResult(LocalTaskRunner.Installations()[host]);
    }

    protected override Task<IReadOnlyDictionary<string, string>> GetJobEnvironmentCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        Record("GetJobEnvironment");
        return Task.FromResult<IReadOnlyDictionary<string, string>>(new Dictionary<string, string>());
    }

    protected override Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        Record("SubmitJob");
        var id = "job-" + request.Context.Id.ToString("N")[..8];
        var entry = new Entry(request) { State = JobState.Running };
        _jobs[id] = entry;
        entry.Run = Task.Run(async () =>
        {
            try
            {
                entry.Log = await LocalTaskRunner.RunTasksAsync(request.Tasks, request.TemporaryFolder);
                entry.State = JobState.Completed;
            }
            catch (InvalidOperationException e)
            {
                entry.Log = e.Message;
                entry.State = JobState.Failed;
            }
        }, CancellationToken.None);
        return Task.FromResult(id);
    }

    protected override Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<Job>>([.. _jobs.Keys.Select(ToJob)]);

    protected override Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        _jobs.ContainsKey(jobId) ? Task.FromResult(ToJob(jobId)) : throw new JobNotFoundException(jobId, Name);

    protected override Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        var entry = _jobs[jobId];
        var terminal = entry.State.IsTerminal();
        var bytes = System.Text.Encoding.UTF8.GetBytes(terminal ? entry.Log : string.Empty);
        var text = offset < bytes.Length ? System.Text.Encoding.UTF8.GetString(bytes, (int)offset, bytes.Length - (int)offset) : string.Empty;
        return Task.FromResult(new LogChunk(text, Math.Max(offset, bytes.Length), terminal));
    }

    protected override async Task<IReadOnlyList<string>> FetchOutputsCoreAsync(string jobId, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        Record("FetchOutputs");
        var entry = _jobs[jobId];
        var written = new List<string>();
        foreach (var output in entry.Request.Tasks.SelectMany(t => t.Outputs ?? []))
        {
            var target = Path.Combine(localFolder, output);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            await using (var source = File.OpenRead(Path.Combine(entry.Request.TemporaryFolder, output)))
            await using (var destination = File.Create(target))
            {
                await source.CopyToAsync(destination, cancellationToken);
            }

            written.Add(target);
        }

        return written;
    }

    protected override Task DeleteJobCoreAsync(string jobId, CancellationToken cancellationToken)
    {
        Record("DeleteJob");
        if (_jobs.TryRemove(jobId, out var entry))
        {
            Directory.Delete(entry.Request.TemporaryFolder, recursive: true);
        }

        return Task.CompletedTask;
    }

    private Job ToJob(string id)
    {
        var entry = _jobs[id];
        var total = entry.Request.Tasks.Count;
        var done = entry.State == JobState.Completed ? total : 0;
        return new Job(id, entry.Request.Name, entry.State, new JobProgress(total, done, entry.State == JobState.Running ? 1 : 0, entry.State == JobState.Failed ? 1 : 0),
            DateTimeOffset.UtcNow, null, null, entry.Request.Context.Id);
    }

    private void Record(string call)
    {
        lock (Calls)
        {
            Calls.Add(call);
        }
    }

    private sealed class Entry(JobRequest request)
    {
        public JobRequest Request { get; } = request;

        public volatile JobState State;

        public string Log { get; set; } = string.Empty;

        public Task? Run { get; set; }
    }
}

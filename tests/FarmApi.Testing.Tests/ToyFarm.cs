using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmApi.Testing.Tests;

/// <summary>A toy farm that runs each job at once, in the submitting process, and keeps its jobs in a store it is
/// given: one per instance (what a careless adapter does) or one shared by all instances.</summary>
public sealed class ToyFarm(ToyFarm.Store store) : BaseFarmPlugin
{
    public sealed class Store
    {
        public ConcurrentDictionary<string, (Job Job, List<TaskInfo> Tasks, string Log)> Jobs { get; } = new();
    }

    public static async Task<BaseFarmPlugin> CreateAsync(Store store, string dataDirectory)
    {
        var farm = new ToyFarm(store);
        await farm.InitializeAsync(new FarmPluginContext
        {
            PluginName = "Toy",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string>(),
            DataDirectory = dataDirectory,
        });
        return farm;
    }

    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var folder = Path.Combine(Context.DataDirectory, context.Id.ToString("N"));
        Directory.CreateDirectory(folder);
        return Task.FromResult(folder);
    }

    protected override Task<IReadOnlyList<string>> CopyRenderFilesCoreAsync(RenderContext context, string temporaryFolder,
        IReadOnlyList<RenderFile> files, IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        foreach (var file in files)
        {
            var target = Path.Combine(temporaryFolder, file.RelativePath);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file.LocalPath, target, overwrite: true);
        }

        return Task.FromResult<IReadOnlyList<string>>([.. files.Select(f => f.RelativePath)]);
    }

    protected override Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken) =>
        Task.FromResult(new InstallationMetadata(host, "1", host));

    protected override async Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var id = "toy-" + request.Context.Id.ToString("N")[..12];
        if (store.Jobs.ContainsKey(id))
        {
            return id;
        }

        var log = new StringBuilder();
        var tasks = new List<TaskInfo>();
        var state = JobState.Completed;
        foreach (var task in request.Tasks)
        {
            var exit = 0;
            foreach (var command in task.Commands)
            {
                var info = new ProcessStartInfo(command.Executable) { WorkingDirectory = request.TemporaryFolder, RedirectStandardOutput = true };
                foreach (var argument in command.Arguments)
                {
                    info.ArgumentList.Add(argument);
                }

                using var process = Process.Start(info)!;
                log.Append(await process.StandardOutput.ReadToEndAsync(cancellationToken));
                await process.WaitForExitAsync(cancellationToken);
                exit = process.ExitCode;
                if (exit != 0)
                {
                    break;
                }
            }

            var ok = exit == 0 && (task.Outputs ?? []).All(o => File.Exists(Path.Combine(request.TemporaryFolder, o)));
            tasks.Add(new TaskInfo(task.Id, ok ? JobState.Completed : JobState.Failed, 1, "toy", exit, null, null));
            if (!ok)
            {
                state = JobState.Failed;
            }
        }

        var now = DateTimeOffset.UtcNow;
        var job = new Job(id, request.Name, state,
            new JobProgress(tasks.Count, tasks.Count(t => t.State == JobState.Completed), 0, tasks.Count(t => t.State == JobState.Failed)),
            now, now, now, request.Context.Id, request.Submitter);
        store.Jobs[id] = (job, tasks, log.ToString());
        return id;
    }

    protected override Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken)
    {
        IEnumerable<Job> jobs = store.Jobs.Values.Select(j => j.Job).OrderByDescending(j => j.SubmittedAt);
        if (query.State is { } s)
        {
            jobs = jobs.Where(j => j.State == s);
        }

        if (query.RenderContextId is { } c)
        {
            jobs = jobs.Where(j => j.RenderContextId == c);
        }

        return Task.FromResult<IReadOnlyList<Job>>([.. jobs.Take(query.Limit ?? int.MaxValue)]);
    }

    protected override Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        store.Jobs.TryGetValue(jobId, out var entry) ? Task.FromResult(entry.Job) : throw new JobNotFoundException(jobId, Name);

    protected override Task<IReadOnlyList<TaskInfo>> GetTasksCoreAsync(string jobId, CancellationToken cancellationToken) =>
        store.Jobs.TryGetValue(jobId, out var entry) ? Task.FromResult<IReadOnlyList<TaskInfo>>(entry.Tasks) : throw new JobNotFoundException(jobId, Name);

    protected override Task<LogChunk> ReadRenderLogCoreAsync(string jobId, long offset, CancellationToken cancellationToken)
    {
        if (!store.Jobs.TryGetValue(jobId, out var entry))
        {
            throw new JobNotFoundException(jobId, Name);
        }

        var bytes = Encoding.UTF8.GetBytes(entry.Log);
        var start = (int)Math.Min(offset, bytes.Length);
        return Task.FromResult(new LogChunk(Encoding.UTF8.GetString(bytes, start, bytes.Length - start), bytes.Length, true));
    }
}

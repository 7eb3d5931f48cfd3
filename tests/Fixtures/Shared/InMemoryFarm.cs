using System.Collections.Concurrent;
using FarmApi;

namespace FarmPlugins.Fixtures;

/// <summary>A farm that completes every job at once and keeps it in memory: enough to prove a plug-in loaded and runs.</summary>
public abstract class InMemoryFarm : BaseFarmPlugin
{
    private readonly ConcurrentDictionary<string, Job> _jobs = new(StringComparer.Ordinal);

    /// <summary>Extra properties recorded on each submitted job (what the fixture wants a test to see).</summary>
    protected virtual IReadOnlyDictionary<string, string> DescribeJob(JobRequest request) => new Dictionary<string, string>();

    protected override Task<string> CreateTemporaryFolderCoreAsync(RenderContext context, CancellationToken cancellationToken)
    {
        var folder = Path.Combine(Context.DataDirectory, "jobs", context.Id.ToString("N"));
        Directory.CreateDirectory(folder);
        return Task.FromResult(folder);
    }

    protected override Task<InstallationMetadata> GetInstallationMetadataCoreAsync(string host, CancellationToken cancellationToken) =>
        Task.FromResult(new InstallationMetadata(host, "1.0", host));

    protected override Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var id = "mem-" + request.Context.Id.ToString("N");
        var now = TimeProvider.GetUtcNow();
        var properties = new Dictionary<string, string>(DescribeJob(request)) { ["AssemblyPath"] = GetType().Assembly.Location };
        _jobs.TryAdd(id, new Job(id, request.Name, JobState.Completed,
            new JobProgress(request.Tasks.Count, request.Tasks.Count, 0, 0), now, now, now, request.Context.Id, request.Submitter,
            Properties: properties));
        return Task.FromResult(id);
    }

    protected override Task<IReadOnlyList<Job>> GetJobsCoreAsync(JobQuery query, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<Job>>(_jobs.Values.OrderByDescending(j => j.SubmittedAt).ToList());

    protected override Task<Job> GetJobCoreAsync(string jobId, CancellationToken cancellationToken) =>
        _jobs.TryGetValue(jobId, out var job) ? Task.FromResult(job) : throw new JobNotFoundException(jobId, Name);
}

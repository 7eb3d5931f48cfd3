using FarmApi;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>Small job builders.</summary>
public static class Jobs
{
    public static TaskSpec Shell(string id, string script, IReadOnlyList<string>? dependsOn = null, IReadOnlyList<string>? outputs = null,
        TimeSpan? timeout = null, string host = "command") =>
        new(id, [new Command("/bin/sh", ["-c", script])], dependsOn, outputs, host, timeout);

    public static async Task<JobRequest> RequestAsync(BaseFarmPlugin plugin, string name, IReadOnlyList<TaskSpec> tasks, IReadOnlyList<RenderFile>? files = null,
        int maxAttempts = 3, int priority = 50, RenderContext? context = null)
    {
        context ??= new RenderContext(Guid.NewGuid(), RenderType.Disk, name);
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        if (files is not null)
        {
            await plugin.CopyRenderFilesAsync(context, folder, files);
        }

        return new JobRequest
        {
            Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder, Files = files?.Select(f => f.RelativePath).ToList() ?? [],
            MaxAttempts = maxAttempts, Priority = priority,
        };
    }

    public static async Task<Job> WaitTerminalAsync(BaseFarmPlugin plugin, string jobId, TimeSpan timeout)
    {
        Job? job = null;
        await FarmPlugins.TestSupport.Eventually.WaitAsync(async () =>
        {
            job = await plugin.GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, timeout, $"job {jobId} to finish", TimeSpan.FromMilliseconds(100));
        return job!;
    }
}

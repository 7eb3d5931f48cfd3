using System.Security.Cryptography;
using System.Text;
using Xunit;

namespace FarmApi.Testing;

/// <summary>
/// The conformance kit: every farm adapter's test project subclasses this class once, giving a factory that makes a
/// <em>new, initialized</em> adapter instance on every call. Each check submits real jobs whose tasks run
/// <c>/bin/sh</c> commands on the farm, and asks a fresh instance for everything after submission, so an adapter
/// that keeps its jobs in memory fails it.
/// </summary>
/// <remarks>
/// <para>The checks assume the render nodes run on this machine (as in an adapter's test environment): the stop and
/// restart checks count side effects in files under <see cref="KitDirectory"/>, an absolute local path.</para>
/// <para>A check whose capability the adapter does not declare returns without asserting anything and says so on
/// the test output.</para>
/// <para>Time bounds are generous (<see cref="JobTimeout"/>); the factory should pass settings that shorten leases
/// and poll intervals.</para>
/// </remarks>
public abstract class FarmConformanceTests : IAsyncLifetime
{
    private readonly List<BaseFarmPlugin> _instances = [];
    private readonly string _kitDirectory;

    /// <summary>Makes the kit's working folder.</summary>
    protected FarmConformanceTests()
    {
        _kitDirectory = Path.Combine(Path.GetTempPath(), "farm-conformance-" + Guid.NewGuid().ToString("N")[..12]);
    }

    /// <summary>A local folder, private to one check, that tasks write side effects into (absolute path).</summary>
    protected string KitDirectory => _kitDirectory;

    /// <summary>How long a job may take to reach a terminal state. Default: 3 minutes.</summary>
    protected virtual TimeSpan JobTimeout => TimeSpan.FromMinutes(3);

    /// <summary>How often the kit polls the farm. Default: 200 ms.</summary>
    protected virtual TimeSpan PollInterval => TimeSpan.FromMilliseconds(200);

    /// <summary>The shell the kit's task commands run, as the render node sees it. Default: <c>/bin/sh</c>.</summary>
    protected virtual string Shell => "/bin/sh";

    /// <summary>Makes a new adapter instance, initialized, on every call. Never return a shared instance.</summary>
    /// <param name="cancellationToken">Cancels the creation.</param>
    /// <returns>The new instance; the kit disposes it.</returns>
    protected abstract Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken);

    /// <summary>Called once before the checks of one test: start servers or clusters here.</summary>
    /// <returns>A task that completes when the farm is ready.</returns>
    protected virtual Task InitializeFarmAsync() => Task.CompletedTask;

    /// <summary>Called once after the checks of one test, after every instance was disposed.</summary>
    /// <returns>A task that completes when the farm is cleaned up.</returns>
    protected virtual Task DisposeFarmAsync() => Task.CompletedTask;

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_kitDirectory);
        // Tasks may run as another user on some farms: let them write their side effects.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(_kitDirectory, (UnixFileMode)0x1FF);
        }
        await InitializeFarmAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        BaseFarmPlugin[] instances;
        lock (_instances)
        {
            instances = [.. _instances];
            _instances.Clear();
        }

        foreach (var instance in instances)
        {
            await instance.DisposeAsync().ConfigureAwait(false);
        }

        await DisposeFarmAsync().ConfigureAwait(false);
        try
        {
            Directory.Delete(_kitDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>A job of two tasks, the second depending on the first: the first writes a per-run nonce to a file,
    /// the second reads it and prints it; the job completes and the nonce is in the render log.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task DependentTasks_PassANonce_AndTheJobCompletes()
    {
        var nonce = Guid.NewGuid().ToString("N");
        var jobId = await SubmitAsync("nonce",
        [
            Sh("write", $"echo {nonce} > nonce.txt", outputs: ["nonce.txt"]),
            Sh("read", "printf 'nonce=%s\\n' \"$(cat nonce.txt)\"", dependsOn: ["write"]),
        ]);

        var job = await WaitForTerminalAsync(jobId);

        Assert.True(job.State == JobState.Completed, $"job {jobId} ended {job.State}, not Completed.{await DescribeAsync(jobId)}");
        Assert.Equal(2, job.Progress.TotalTasks);
        Assert.Equal(2, job.Progress.CompletedTasks);
        if (await SupportsAsync(FarmCapabilities.RenderLog))
        {
            var log = await ReadWholeLogAsync(jobId);
            Assert.Contains($"nonce={nonce}", log, StringComparison.Ordinal);
        }
    }

    /// <summary>A staged input file: the task prints its SHA-256, which must equal the local file's.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task StagedInput_ReachesTheTask_Intact()
    {
        if (!await SupportsAsync(FarmCapabilities.CopyFiles) || !await SupportsAsync(FarmCapabilities.RenderLog))
        {
            return;
        }

        var local = Path.Combine(_kitDirectory, "input.bin");
        var bytes = new byte[300_000];
        Random.Shared.NextBytes(bytes);
        await File.WriteAllBytesAsync(local, bytes);
        var expected = Convert.ToHexStringLower(SHA256.HashData(bytes));

        var context = RenderContext.Create("conformance-input");
        var plugin = await NewPluginAsync();
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var copied = await plugin.CopyRenderFilesAsync(context, folder, [new RenderFile(local, "inputs/data.bin")]);
        var where = Assert.Single(copied);
        Assert.EndsWith("inputs/data.bin", where, StringComparison.Ordinal);
        var request = Request(context, folder, "input",
            [Sh("hash", "printf 'sha256=%s\\n' \"$(sha256sum inputs/data.bin | cut -d' ' -f1)\"")]) with { Files = ["inputs/data.bin"] };
        var jobId = await (await NewPluginAsync()).SubmitJobAsync(request);

        var job = await WaitForTerminalAsync(jobId);

        Assert.True(job.State == JobState.Completed, $"job ended {job.State}.{await DescribeAsync(jobId)}");
        Assert.Contains($"sha256={expected}", await ReadWholeLogAsync(jobId), StringComparison.Ordinal);
    }

    /// <summary>A failing command ends the job <see cref="JobState.Failed"/>, with the exit code in
    /// <see cref="BaseFarmPlugin.GetTasksAsync"/> when that capability is there.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task FailingCommand_FailsTheJob_WithItsExitCode()
    {
        var jobId = await SubmitAsync("failing", [Sh("fail", "echo about to fail; exit 7")]);

        var job = await WaitForTerminalAsync(jobId);

        Assert.True(job.State == JobState.Failed, $"job ended {job.State}, not Failed.{await DescribeAsync(jobId)}");
        Assert.Equal(1, job.Progress.FailedTasks);
        if (await SupportsAsync(FarmCapabilities.TaskDetails))
        {
            var tasks = await (await NewPluginAsync()).GetTasksAsync(jobId);
            var task = Assert.Single(tasks);
            Assert.Equal("fail", task.Id);
            Assert.Equal(JobState.Failed, task.State);
            Assert.Equal(7, task.ExitCode);
        }
    }

    /// <summary>A declared output that the task does not write fails the task, though it exits 0.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task MissingDeclaredOutput_FailsTheTask()
    {
        var jobId = await SubmitAsync("missing-output", [Sh("forgetful", "echo done", outputs: ["never-written.txt"])]);

        var job = await WaitForTerminalAsync(jobId);

        Assert.True(job.State == JobState.Failed, $"job ended {job.State}, not Failed.{await DescribeAsync(jobId)}");
    }

    /// <summary>Stop: a task that appends to a heartbeat file every 100 ms stops appending and the job is
    /// <see cref="JobState.Cancelled"/>.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task Stop_KillsTheRunningTask_AndCancelsTheJob()
    {
        if (!await SupportsAsync(FarmCapabilities.Stop))
        {
            return;
        }

        var heartbeat = Path.Combine(_kitDirectory, "heartbeat.txt");
        var jobId = await SubmitAsync("stop",
            [Sh("beat", $"while true; do echo beat >> {Quote(heartbeat)}; sleep 0.1; done")]);
        await WaitUntilAsync(() => Task.FromResult(LineCount(heartbeat) >= 3), "the task to start beating");

        await (await NewPluginAsync()).StopJobAsync(jobId);

        var job = await WaitForTerminalAsync(jobId);
        Assert.True(job.State == JobState.Cancelled, $"job ended {job.State}, not Cancelled.{await DescribeAsync(jobId)}");
        // Give a survivor time to show itself: the count must not move over a second.
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        var settled = LineCount(heartbeat);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.True(LineCount(heartbeat) == settled, "the task kept appending to its heartbeat file after the job was stopped");
    }

    /// <summary>Restart after a failure re-runs only the failed task: the completed one's side effect happens once.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task Restart_RerunsOnlyTheFailedTask()
    {
        if (!await SupportsAsync(FarmCapabilities.Restart))
        {
            return;
        }

        var goodRuns = Path.Combine(_kitDirectory, "good-runs.txt");
        var flakyRuns = Path.Combine(_kitDirectory, "flaky-runs.txt");
        var fixedFlag = Path.Combine(_kitDirectory, "fixed");
        var jobId = await SubmitAsync("restart",
        [
            Sh("good", $"echo run >> {Quote(goodRuns)}"),
            Sh("flaky", $"echo run >> {Quote(flakyRuns)}; test -e {Quote(fixedFlag)}"),
        ]);
        var first = await WaitForTerminalAsync(jobId);
        Assert.True(first.State == JobState.Failed, $"job ended {first.State}, not Failed.{await DescribeAsync(jobId)}");

        await File.WriteAllTextAsync(fixedFlag, "fixed");
        await (await NewPluginAsync()).RestartJobAsync(jobId);
        await WaitUntilAsync(async () => (await (await NewPluginAsync()).GetJobAsync(jobId)).State == JobState.Completed,
            "the restarted job to complete");

        Assert.Equal(1, LineCount(goodRuns));
        Assert.Equal(2, LineCount(flakyRuns));
    }

    /// <summary>Log offsets only grow, reading from any offset returns the rest, and <see cref="LogChunk.IsComplete"/>
    /// is set only once the job is terminal.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task RenderLog_OffsetsGrow_AndCompleteOnlyWhenTerminal()
    {
        if (!await SupportsAsync(FarmCapabilities.RenderLog))
        {
            return;
        }

        var jobId = await SubmitAsync("log",
            [Sh("lines", "i=0; while [ $i -lt 20 ]; do echo \"line $i é\"; i=$((i+1)); sleep 0.1; done")]);

        var offset = 0L;
        var collected = new StringBuilder();
        var deadline = DateTime.UtcNow + JobTimeout;
        while (true)
        {
            var chunk = await (await NewPluginAsync()).ReadRenderLogAsync(jobId, offset);
            Assert.True(chunk.NextOffset >= offset, $"the log offset went back from {offset} to {chunk.NextOffset}");
            Assert.Equal(chunk.NextOffset - offset, Encoding.UTF8.GetByteCount(chunk.Text));
            collected.Append(chunk.Text);
            offset = chunk.NextOffset;
            if (chunk.IsComplete)
            {
                var after = await (await NewPluginAsync()).GetJobAsync(jobId);
                Assert.True(after.State.IsTerminal(), $"IsComplete was set while the job was {after.State}");
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, $"the log of {jobId} never completed");
            await Task.Delay(PollInterval);
        }

        var whole = await (await NewPluginAsync()).ReadRenderLogAsync(jobId, 0);
        Assert.Equal(whole.Text, collected.ToString());
        Assert.Contains("line 19 é", whole.Text, StringComparison.Ordinal);
        var bytes = Encoding.UTF8.GetBytes(whole.Text);
        var middle = bytes.Length / 2;
        while (middle < bytes.Length && (bytes[middle] & 0xC0) == 0x80)
        {
            middle++;
        }

        var rest = await (await NewPluginAsync()).ReadRenderLogAsync(jobId, middle);
        Assert.Equal(Encoding.UTF8.GetString(bytes, middle, bytes.Length - middle), rest.Text);
        Assert.Equal(whole.NextOffset, rest.NextOffset);
        Assert.True(rest.IsComplete);
        var end = await (await NewPluginAsync()).ReadRenderLogAsync(jobId, whole.NextOffset);
        Assert.Equal(string.Empty, end.Text);
        Assert.Equal(whole.NextOffset, end.NextOffset);
    }

    /// <summary>An unknown id throws <see cref="JobNotFoundException"/>, from every operation that takes one.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task UnknownJobId_ThrowsJobNotFound()
    {
        var unknown = "no-such-job-" + Guid.NewGuid().ToString("N")[..8];
        var plugin = await NewPluginAsync();

        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync(unknown));
        if (await SupportsAsync(FarmCapabilities.TaskDetails))
        {
            await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetTasksAsync(unknown));
        }

        if (await SupportsAsync(FarmCapabilities.RenderLog))
        {
            await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.ReadRenderLogAsync(unknown, 0));
        }

        if (await SupportsAsync(FarmCapabilities.Stop))
        {
            await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.StopJobAsync(unknown));
        }
    }

    /// <summary>An invalid request never reaches the adapter: it is refused with an <see cref="ArgumentException"/>
    /// and no job of its render context exists afterwards.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task InvalidRequest_IsRefused_AndNothingIsSubmitted()
    {
        var context = RenderContext.Create("conformance-invalid");
        var plugin = await NewPluginAsync();
        var folder = await plugin.CreateTemporaryFolderAsync(context);

        var cycle = Request(context, folder, "invalid",
            [Sh("a", "true", dependsOn: ["b"]), Sh("b", "true", dependsOn: ["a"])]);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => plugin.SubmitJobAsync(cycle));
        var escaping = Request(context, folder, "invalid", [Sh("a", "true", outputs: ["../outside.txt"])]);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => plugin.SubmitJobAsync(escaping));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => plugin.SubmitJobAsync(Request(context, folder, "invalid", [])));

        var jobs = await (await NewPluginAsync()).GetJobsAsync(new JobQuery(RenderContextId: context.Id));
        Assert.Empty(jobs);
    }

    /// <summary>Submitting the same render context twice returns the same job id and runs nothing twice.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task SameRenderContext_SubmittedTwice_IsOneJob()
    {
        var runs = Path.Combine(_kitDirectory, "runs.txt");
        var context = RenderContext.Create("conformance-twice");
        var folder = await (await NewPluginAsync()).CreateTemporaryFolderAsync(context);
        var request = Request(context, folder, "twice", [Sh("once", $"echo run >> {Quote(runs)}")]);

        var first = await (await NewPluginAsync()).SubmitJobAsync(request);
        var second = await (await NewPluginAsync()).SubmitJobAsync(request);
        Assert.Equal(first, second);
        var job = await WaitForTerminalAsync(first);
        var third = await (await NewPluginAsync()).SubmitJobAsync(request);

        Assert.Equal(first, third);
        Assert.True(job.State == JobState.Completed, $"job ended {job.State}.{await DescribeAsync(first)}");
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.Equal(1, LineCount(runs));
        var listed = await (await NewPluginAsync()).GetJobsAsync(new JobQuery(RenderContextId: context.Id));
        Assert.Equal(first, Assert.Single(listed).Id);
    }

    /// <summary><see cref="BaseFarmPlugin.GetJobsAsync"/> honours <see cref="JobQuery.State"/>,
    /// <see cref="JobQuery.RenderContextId"/> and <see cref="JobQuery.Limit"/>.</summary>
    /// <returns>The check.</returns>
    [Fact]
    public async Task GetJobs_HonoursStateRenderContextAndLimit()
    {
        var good = RenderContext.Create("conformance-query-good");
        var bad = RenderContext.Create("conformance-query-bad");
        var goodId = await SubmitAsync(good, "query-good", [Sh("ok", "true")]);
        var badId = await SubmitAsync(bad, "query-bad", [Sh("ko", "exit 3")]);
        await WaitForTerminalAsync(goodId);
        await WaitForTerminalAsync(badId);

        var plugin = await NewPluginAsync();
        var byContext = await plugin.GetJobsAsync(new JobQuery(RenderContextId: good.Id));
        Assert.Equal(goodId, Assert.Single(byContext).Id);
        Assert.Equal(good.Id, byContext[0].RenderContextId);

        var failed = await plugin.GetJobsAsync(new JobQuery(State: JobState.Failed));
        Assert.Contains(failed, j => j.Id == badId);
        Assert.DoesNotContain(failed, j => j.Id == goodId);
        Assert.All(failed, j => Assert.Equal(JobState.Failed, j.State));

        var completedOfBad = await plugin.GetJobsAsync(new JobQuery(State: JobState.Completed, RenderContextId: bad.Id));
        Assert.Empty(completedOfBad);

        var limited = await plugin.GetJobsAsync(new JobQuery(Limit: 1));
        Assert.Single(limited);
        var all = await plugin.GetJobsAsync();
        Assert.Contains(all, j => j.Id == goodId);
        Assert.Contains(all, j => j.Id == badId);
    }

    /// <summary>Makes a new instance through <see cref="CreatePluginAsync"/> and tracks it for disposal.</summary>
    /// <returns>The instance.</returns>
    protected async Task<BaseFarmPlugin> NewPluginAsync()
    {
        using var timeout = new CancellationTokenSource(JobTimeout);
        var plugin = await CreatePluginAsync(timeout.Token).ConfigureAwait(false);
        Assert.True(plugin.IsInitialized, $"{GetType().Name}.CreatePluginAsync returned an instance that is not initialized");
        lock (_instances)
        {
            Assert.DoesNotContain(_instances, p => ReferenceEquals(p, plugin));
            _instances.Add(plugin);
        }

        return plugin;
    }

    /// <summary>A task running one shell script in the job folder.</summary>
    /// <param name="id">The task id.</param>
    /// <param name="script">The script, run with <see cref="Shell"/> <c>-c</c>.</param>
    /// <param name="dependsOn">Tasks it waits for.</param>
    /// <param name="outputs">Outputs it must write.</param>
    /// <returns>The task.</returns>
    protected TaskSpec Sh(string id, string script, string[]? dependsOn = null, string[]? outputs = null) =>
        new(id, [Command.Of(Shell, "-c", script)], dependsOn, outputs);

    /// <summary>A request of the kit: one attempt per task, so failures show at once.</summary>
    /// <param name="context">The render context.</param>
    /// <param name="folder">The temporary folder.</param>
    /// <param name="name">The job name.</param>
    /// <param name="tasks">The tasks.</param>
    /// <returns>The request.</returns>
    protected static JobRequest Request(RenderContext context, string folder, string name, IReadOnlyList<TaskSpec> tasks) => new()
    {
        Context = context,
        Name = "conformance-" + name,
        Tasks = tasks,
        TemporaryFolder = folder,
        MaxAttempts = 1,
        Submitter = "conformance",
    };

    private Task<string> SubmitAsync(string name, IReadOnlyList<TaskSpec> tasks) =>
        SubmitAsync(RenderContext.Create("conformance-" + name), name, tasks);

    private async Task<string> SubmitAsync(RenderContext context, string name, IReadOnlyList<TaskSpec> tasks)
    {
        var plugin = await NewPluginAsync();
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        return await plugin.SubmitJobAsync(Request(context, folder, name, tasks));
    }

    private async Task<bool> SupportsAsync(FarmCapabilities capability) =>
        (await NewPluginAsync()).Capabilities.HasFlag(capability);

    private async Task<Job> WaitForTerminalAsync(string jobId)
    {
        Job? job = null;
        await WaitUntilAsync(async () =>
        {
            job = await (await NewPluginAsync()).GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, $"job {jobId} to reach a terminal state (last seen {job?.State})");
        return job!;
    }

    private async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + JobTimeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {JobTimeout.TotalSeconds:0} s waiting for {what}");
            }

            await Task.Delay(PollInterval);
        }
    }

    private async Task<string> ReadWholeLogAsync(string jobId)
    {
        var text = new StringBuilder();
        var offset = 0L;
        for (var i = 0; i < 10_000; i++)
        {
            var chunk = await (await NewPluginAsync()).ReadRenderLogAsync(jobId, offset);
            text.Append(chunk.Text);
            if (chunk.NextOffset == offset || chunk.IsComplete)
            {
                break;
            }

            offset = chunk.NextOffset;
        }

        return text.ToString();
    }

    private async Task<string> DescribeAsync(string jobId)
    {
        try
        {
            var plugin = await NewPluginAsync();
            var detail = new StringBuilder();
            if (plugin.Capabilities.HasFlag(FarmCapabilities.TaskDetails))
            {
                foreach (var task in await plugin.GetTasksAsync(jobId))
                {
                    detail.Append($"\n  task {task.Id}: {task.State}, attempts {task.Attempts}, exit {task.ExitCode}");
                }
            }

            if (plugin.Capabilities.HasFlag(FarmCapabilities.RenderLog))
            {
                var log = await ReadWholeLogAsync(jobId);
                detail.Append("\n  log:\n").Append(log.Length > 4000 ? log[^4000..] : log);
            }

            return detail.ToString();
        }
        catch (Exception ex) when (ex is FarmPluginException or InvalidOperationException)
        {
            return $"\n  (could not describe the job: {ex.Message})";
        }
    }

    private static int LineCount(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllLines(path).Length : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static string Quote(string path) => "'" + path.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}

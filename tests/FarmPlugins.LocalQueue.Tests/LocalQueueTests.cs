using System.Diagnostics;
using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;
using static FarmPlugins.LocalQueue.Tests.LocalQueueFarm;

namespace FarmPlugins.LocalQueue.Tests;

public sealed class LocalQueueTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);
    private readonly LocalQueueFarm _farm = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private async Task<(string JobId, string Folder)> SubmitAsync(BaseFarmPlugin plugin, IReadOnlyList<TaskSpec> tasks, int maxAttempts = 1,
        RenderContext? context = null)
    {
        context ??= RenderContext.Create("test");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var id = await plugin.SubmitJobAsync(new JobRequest { Context = context, Name = "test", Tasks = tasks, TemporaryFolder = folder, MaxAttempts = maxAttempts });
        return (id, folder);
    }

    private async Task<Job> WaitTerminalAsync(string jobId)
    {
        Job? job = null;
        await Eventually.WaitAsync(async () =>
        {
            var fresh = await _farm.NewPluginAsync();
            job = await fresh.GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, Generous, $"job {jobId} to end");
        return job!;
    }

    private async Task<string> ReadLogAsync(string jobId)
    {
        var plugin = await _farm.NewPluginAsync();
        var chunk = await plugin.ReadRenderLogAsync(jobId, 0);
        return chunk.Text;
    }

    [Fact]
    public async Task DependentTasks_Complete_InOrder_AndTheLogHoldsTheirOutput()
    {
        var plugin = await _farm.NewPluginAsync();
        var nonce = Guid.NewGuid().ToString("N");
        var (jobId, _) = await SubmitAsync(plugin, [Sh("write", $"echo {nonce} > nonce.txt"), Sh("read", "cat nonce.txt", ["write"])]);

        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(new JobProgress(2, 2, 0, 0), job.Progress);
        var log = await ReadLogAsync(jobId);
        Assert.Contains($"[read] {nonce}", log);
    }

    [Fact]
    public async Task FailingCommand_FailsTheJob_WithItsExitCode_AndDependentsFail()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, _) = await SubmitAsync(plugin, [Sh("bad", "exit 3"), Sh("after", "true", ["bad"])]);

        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Failed, job.State);
        var tasks = await (await _farm.NewPluginAsync()).GetTasksAsync(jobId);
        Assert.Equal(3, tasks.Single(t => t.Id == "bad").ExitCode);
        Assert.Equal(JobState.Failed, tasks.Single(t => t.Id == "after").State);
    }

    [Fact]
    public async Task MissingExecutable_FailsTheTask_WithALogLineNamingIt()
    {
        var plugin = await _farm.NewPluginAsync();
        var context = RenderContext.Create("missing");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var jobId = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = context, Name = "missing", TemporaryFolder = folder, MaxAttempts = 1,
            Tasks = [new TaskSpec("t", [Command.Of("no-such-renderer-xyz", "--help")])],
        });

        Assert.Equal(JobState.Failed, (await WaitTerminalAsync(jobId)).State);
        Assert.Contains("cannot run 'no-such-renderer-xyz'", await ReadLogAsync(jobId));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task ExecutableOutsideTheJobFolder_FailsTheTask_WithoutRunningIt()
    {
        var plugin = await _farm.NewPluginAsync();
        var context = RenderContext.Create("outside");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        // A script next to the job folder that would leave a mark if it ran.
        var mark = Path.Combine(Path.GetDirectoryName(folder)!, $"ran-{context.Id:N}");
        var script = Path.Combine(Path.GetDirectoryName(folder)!, $"outside-{context.Id:N}.sh");
        await File.WriteAllTextAsync(script, $"#!/bin/sh\ntouch '{mark}'\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        try
        {
            var jobId = await plugin.SubmitJobAsync(new JobRequest
            {
                Context = context, Name = "outside", TemporaryFolder = folder, MaxAttempts = 1,
                Tasks = [new TaskSpec("t", [Command.Of($"../{Path.GetFileName(script)}")])],
            });

            Assert.Equal(JobState.Failed, (await WaitTerminalAsync(jobId)).State);
            Assert.Contains($"cannot run '../{Path.GetFileName(script)}'", await ReadLogAsync(jobId));
            Assert.False(File.Exists(mark));
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Fact]
    public async Task MissingDeclaredOutput_FailsTheTask()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, _) = await SubmitAsync(plugin, [Sh("t", "true", outputs: ["out/frame.png"])]);

        Assert.Equal(JobState.Failed, (await WaitTerminalAsync(jobId)).State);
        Assert.Contains("missing output out/frame.png", await ReadLogAsync(jobId));
    }

    [Fact]
    public async Task SameRenderContext_ReturnsTheSameJob_AndRunsNothingTwice()
    {
        var plugin = await _farm.NewPluginAsync();
        var context = RenderContext.Create("twice");
        var (first, folder) = await SubmitAsync(plugin, [Sh("t", "echo ran >> count.txt")], context: context);
        var second = await (await _farm.NewPluginAsync()).SubmitJobAsync(new JobRequest
        {
            Context = context, Name = "test", TemporaryFolder = folder, Tasks = [Sh("t", "echo ran >> count.txt")],
        });

        Assert.Equal(first, second);
        await WaitTerminalAsync(first);
        Assert.Equal("ran\n", await File.ReadAllTextAsync(Path.Combine(folder, "count.txt")));
    }

    [Fact]
    public async Task Stop_KillsTheProcessTree_AndTheJobIsCancelledQuickly()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, folder) = await SubmitAsync(plugin, [Sh("beat", "while true; do echo x >> beat.txt; sleep 0.1; done")]);
        var beat = Path.Combine(folder, "beat.txt");
        await Eventually.WaitAsync(() => File.Exists(beat) && new FileInfo(beat).Length > 10, Generous, "the task to start beating");

        var watch = Stopwatch.StartNew();
        await (await _farm.NewPluginAsync()).StopJobAsync(jobId);
        var job = await (await _farm.NewPluginAsync()).GetJobAsync(jobId);
        Assert.Equal(JobState.Cancelled, job.State);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"stop took {watch.Elapsed}");

        await Task.Delay(500);
        var length = new FileInfo(beat).Length;
        await Task.Delay(1000);
        Assert.Equal(length, new FileInfo(beat).Length);
    }

    [Fact]
    public async Task Stop_InTheFirstMomentsOfATask_StillKillsIt()
    {
        // The agent records a command's process group only after it has run ~50 ms (short tasks end first and cost no
        // write): a stop that lands before that must still kill it (the record fails, and the agent kills the group).
        var plugin = await _farm.NewPluginAsync();
        var (jobId, folder) = await SubmitAsync(plugin, [Sh("early", "echo $$ > pid.txt; exec sleep 60")]);
        var pidFile = Path.Combine(folder, "pid.txt");
        await Eventually.WaitAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).Trim().Length > 0, Generous, "the task to start",
            TimeSpan.FromMilliseconds(2));

        await plugin.StopJobAsync(jobId);

        var pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await Eventually.WaitAsync(() => !ProcessIsAlive(pid), TimeSpan.FromSeconds(10), $"the task's process {pid} to be killed");
        Assert.Equal(JobState.Cancelled, (await plugin.GetJobAsync(jobId)).State);
    }

    private static bool ProcessIsAlive(int pid)
    {
        // A zombie (killed, not yet reaped by the agent) counts as dead.
        var stat = $"/proc/{pid}/stat";
        return File.Exists(stat) && File.ReadAllText(stat).Split(')')[^1].Trim()[0] != 'Z';
    }

    [Fact]
    public async Task Restart_RerunsOnlyTheFailedTask()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, folder) = await SubmitAsync(plugin,
        [
            Sh("good", "echo good >> runs.txt"),
            Sh("flaky", "echo flaky >> runs.txt; if [ ! -f fixed ]; then touch fixed; exit 1; fi"),
        ]);
        Assert.Equal(JobState.Failed, (await WaitTerminalAsync(jobId)).State);

        await (await _farm.NewPluginAsync()).RestartJobAsync(jobId);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);

        var runs = (await File.ReadAllLinesAsync(Path.Combine(folder, "runs.txt"))).ToList();
        Assert.Equal(1, runs.Count(r => r == "good"));
        Assert.Equal(2, runs.Count(r => r == "flaky"));
    }

    [Fact]
    public async Task Timeout_KillsTheTask_AndFailsIt()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, _) = await SubmitAsync(plugin, [Sh("slow", "sleep 60", timeout: TimeSpan.FromSeconds(1))]);

        Assert.Equal(JobState.Failed, (await WaitTerminalAsync(jobId)).State);
        Assert.Contains("timed out", await ReadLogAsync(jobId));
    }

    [Fact]
    public async Task LogOffsets_OnlyGrow_AndReadingFromAnyOffsetReturnsTheRest()
    {
        var plugin = await _farm.NewPluginAsync();
        var (jobId, _) = await SubmitAsync(plugin, [Sh("t", "for i in 1 2 3 4 5; do echo line$i; done")]);
        await WaitTerminalAsync(jobId);

        var whole = await plugin.ReadRenderLogAsync(jobId, 0);
        Assert.True(whole.IsComplete);
        var bytes = System.Text.Encoding.UTF8.GetByteCount(whole.Text);
        Assert.Equal(bytes, whole.NextOffset);
        var middle = bytes / 2;
        var rest = await plugin.ReadRenderLogAsync(jobId, middle);
        Assert.True(rest.NextOffset >= middle);
        var end = await plugin.ReadRenderLogAsync(jobId, whole.NextOffset);
        Assert.Equal(string.Empty, end.Text);
        Assert.True(end.IsComplete);
    }

    [Fact]
    public async Task UnknownJob_ThrowsJobNotFound()
    {
        var plugin = await _farm.NewPluginAsync();
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync("lq-999999"));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync("not-a-job"));
    }

    [Fact]
    public async Task CopyRenderFiles_StoresContentOnce_AndRefusesEscapes()
    {
        using var source = new TempDir("lq-src");
        var file = source.WriteFile("scene.pov", "sphere { 0, 1 }");
        var plugin = await _farm.NewPluginAsync();
        var context = RenderContext.Create("copy");
        var folder = await plugin.CreateTemporaryFolderAsync(context);

        await plugin.CopyRenderFilesAsync(context, folder, [new RenderFile(file, "scene.pov"), new RenderFile(file, "sub/copy.pov")]);

        Assert.Equal("sphere { 0, 1 }", await File.ReadAllTextAsync(Path.Combine(folder, "sub", "copy.pov")));
        await Assert.ThrowsAsync<ArgumentException>(() => plugin.CopyRenderFilesAsync(context, folder, [new RenderFile(file, "../escape.pov")]));
        Assert.False(File.Exists(Path.Combine(folder, "..", "escape.pov")));
    }

    [Fact]
    public async Task CopyRenderFiles_ABlobRemovedSinceTheFileWasHashed_IsCopiedAgain()
    {
        using var source = new TempDir("lq-src");
        var file = source.WriteFile("scene.pov", "sphere { 0, 3 }");
        var plugin = await _farm.NewPluginAsync();
        var first = RenderContext.Create("first");
        await plugin.CopyRenderFilesAsync(first, await plugin.CreateTemporaryFolderAsync(first), [new RenderFile(file, "scene.pov")]);
        await plugin.DisposeAsync(); // waits for the staged file's hashing: the hash cache now knows it

        // Someone empties the blob store; the hash cache still knows the file.
        Directory.Delete(Path.Combine(_farm.DataDirectory, "blobs"), recursive: true);
        plugin = await _farm.NewPluginAsync();
        var second = RenderContext.Create("second");
        var folder = await plugin.CreateTemporaryFolderAsync(second);
        await plugin.CopyRenderFilesAsync(second, folder, [new RenderFile(file, "scene.pov")]);
        await plugin.DisposeAsync();

        Assert.Equal("sphere { 0, 3 }", await File.ReadAllTextAsync(Path.Combine(folder, "scene.pov")));
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(_farm.DataDirectory, "blobs"), "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task CopyRenderFiles_PlacesNewFilesAtOnce_AndHashesThemAfterwards_SoTheNextJobLinksThem()
    {
        using var source = new TempDir("lq-src");
        var files = Enumerable.Range(0, 5).Select(i => new RenderFile(source.WriteFile($"d{i % 2}/f{i}.txt", $"content {i}"), $"d{i % 2}/f{i}.txt")).ToList();
        var plugin = await _farm.NewPluginAsync();
        var first = RenderContext.Create("first");
        var firstFolder = await plugin.CreateTemporaryFolderAsync(first);

        await plugin.CopyRenderFilesAsync(first, firstFolder, files);
        // Every file is in place when the call returns (the hashing goes on in the background).
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal($"content {i}", await File.ReadAllTextAsync(Path.Combine(firstFolder, $"d{i % 2}", $"f{i}.txt")));
        }

        // The plug-in's disposal waits for the hashing: another instance (another host process) links the same tree.
        await plugin.DisposeAsync();
        var other = await _farm.NewPluginAsync();
        var second = RenderContext.Create("second");
        var secondFolder = await other.CopyRenderFilesAsync(second, await other.CreateTemporaryFolderAsync(second), files);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal($"content {i}", await File.ReadAllTextAsync(secondFolder[i]));
            // One inode: the first job's copy, the blob and the second job's link.
            Assert.Equal(3, FileFacts.LinkCount(secondFolder[i]));
        }
    }

    [Fact]
    public async Task CopyRenderFiles_ASourceChangedJustAfterItWasStaged_IsCopiedAgain_WithItsNewContent()
    {
        using var source = new TempDir("lq-src");
        var file = source.WriteFile("scene.pov", "sphere { 0, 1 }");
        var plugin = await _farm.NewPluginAsync();
        var first = RenderContext.Create("first");
        await plugin.CopyRenderFilesAsync(first, await plugin.CreateTemporaryFolderAsync(first), [new RenderFile(file, "scene.pov")]);

        // Rewritten while (or before) the first staging's copy is hashed: its new size and time are not what was staged.
        await File.WriteAllTextAsync(file, "sphere { 0, 2 } // changed");
        var second = RenderContext.Create("second");
        var folder = await plugin.CreateTemporaryFolderAsync(second);
        await plugin.CopyRenderFilesAsync(second, folder, [new RenderFile(file, "scene.pov")]);

        Assert.Equal("sphere { 0, 2 } // changed", await File.ReadAllTextAsync(Path.Combine(folder, "scene.pov")));
    }

    [Fact]
    public async Task ADamagedDatabase_GivesAClearError()
    {
        await File.WriteAllTextAsync(Path.Combine(_farm.DataDirectory, "queue.db"), new string('x', 5000));
        var error = await Assert.ThrowsAnyAsync<FarmPluginException>(() => _farm.NewPluginAsync());
        Assert.Contains("queue.db", error.Message);
    }
}

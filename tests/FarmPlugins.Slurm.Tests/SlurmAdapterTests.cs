using System.Diagnostics;
using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Slurm.Tests;

/// <summary>The Slurm adapter against the real private cluster: what a user notices in states, files, logs and squeue.</summary>
[Collection(SlurmCollection.Name)]
public sealed class SlurmAdapterTests(SlurmFixture fixture) : IDisposable
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);
    private readonly TempDir _scratch = new("slurm-scratch");

    public void Dispose() => _scratch.Dispose();

    private static TaskSpec Sh(string id, string script, string[]? dependsOn = null, string[]? outputs = null, TimeSpan? timeout = null) =>
        new(id, [Command.Of("/bin/sh", "-c", script)], dependsOn, outputs, Timeout: timeout);

    private async Task<(string JobId, string Folder)> SubmitAsync(IReadOnlyList<TaskSpec> tasks, string name = "test", int maxAttempts = 1,
        RenderContext? context = null, Action<Dictionary<string, string>>? configure = null)
    {
        var plugin = await fixture.NewPluginAsync(configure);
        context ??= RenderContext.Create(name);
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var id = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder, MaxAttempts = maxAttempts,
        });
        return (id, folder);
    }

    private async Task<Job> WaitTerminalAsync(string jobId)
    {
        Job? job = null;
        await Eventually.WaitAsync(async () =>
        {
            job = await (await fixture.NewPluginAsync()).GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, Generous, $"job {jobId} to end (last {job?.State})", TimeSpan.FromMilliseconds(100));
        return job!;
    }

    private async Task<string> LogAsync(string jobId) => (await (await fixture.NewPluginAsync()).ReadRenderLogAsync(jobId, 0)).Text;

    private async Task<TaskInfo> TaskAsync(string jobId, string taskId) =>
        (await (await fixture.NewPluginAsync()).GetTasksAsync(jobId)).Single(t => t.Id == taskId);

    /// <summary>Every element Slurm still has for the job's arrays, as (id, state).</summary>
    private async Task<List<(string Element, string State)>> SqueueAsync(Job job)
    {
        var ids = job.Properties!["slurmJobIds"];
        var (_, output, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ids);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Trim().Split('|')).Select(p => (p[0], p[1])).ToList();
    }

    [ComponentFact(Components.Slurm)]
    public async Task TestAsync_Passes_OnTheCluster_AndNamesAMissingPartition()
    {
        var report = await (await fixture.NewPluginAsync()).TestAsync();
        Assert.True(report.Passed, string.Join("\n", report.Checks.Select(c => $"{c.Name}: {c.Passed} {c.Detail}")));
        Assert.Contains(report.Checks, c => c.Name == "controller" && c.Passed);

        var wrong = await (await fixture.NewPluginAsync(s => s["Partition"] = "no-such-partition")).TestAsync();
        Assert.False(wrong.Passed);
        var partition = Assert.Single(wrong.Checks, c => c.Name == "partition");
        Assert.Contains("no-such-partition", partition.Detail, StringComparison.Ordinal);
        Assert.Contains("render", partition.Detail, StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task InvalidSettings_FailInitialization_NamingEverySetting()
    {
        var error = await Assert.ThrowsAsync<FarmPluginException>(() => fixture.NewPluginAsync(s =>
        {
            s["SharedRoot"] = "relative/path";
            s["CpusPerTask"] = "zero";
            s["TimeLimit"] = "soon";
            s["Partition"] = "two words";
        }));

        Assert.Contains("SharedRoot", error.Message, StringComparison.Ordinal);
        Assert.Contains("CpusPerTask", error.Message, StringComparison.Ordinal);
        Assert.Contains("TimeLimit", error.Message, StringComparison.Ordinal);
        Assert.Contains("Partition", error.Message, StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task FailedTile_FailsTheJob_AndTheMergeIsNotLeftPending()
    {
        var (jobId, _) = await SubmitAsync(
        [
            Sh("tile-0", "echo tile 0 > t0"), Sh("tile-1", "echo tile 1 > t1"),
            Sh("tile-2", "echo broken tile >&2; exit 5"), Sh("tile-3", "echo tile 3 > t3"),
            Sh("merge", "cat t0 t1 t2 t3 > merged", ["tile-0", "tile-1", "tile-2", "tile-3"], ["merged"]),
        ], "failed-tile");

        var watch = Stopwatch.StartNew();
        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Failed, job.State);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"the job took {watch.Elapsed} to fail");
        Assert.Equal(new JobProgress(5, 3, 0, 2), job.Progress);
        Assert.Equal(5, (await TaskAsync(jobId, "tile-2")).ExitCode);
        var merge = await TaskAsync(jobId, "merge");
        Assert.Equal(JobState.Failed, merge.State);
        Assert.Null(merge.ExitCode);
        // Slurm holds nothing of the job any more: the merge was cancelled, not left pending on a dependency that can never be met.
        await Eventually.WaitAsync(async () => (await SqueueAsync(job)).All(e => e.State is not ("PENDING" or "RUNNING")),
            TimeSpan.FromSeconds(10), "Slurm to drop the merge");
        Assert.Contains("[tile-2] broken tile", await LogAsync(jobId), StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task Stop_WhileRunning_KillsTheTasks_AndCancelsEveryArray()
    {
        var beats = _scratch.Combine("beats");
        Directory.CreateDirectory(beats);
        var (jobId, _) = await SubmitAsync(
        [
            Sh("a", $"while true; do echo x >> '{beats}/a'; sleep 0.1; done"),
            Sh("b", $"while true; do echo x >> '{beats}/b'; sleep 0.1; done"),
            Sh("after", $"touch '{beats}/after-ran'", ["a", "b"]),
        ], "stop");
        await Eventually.WaitAsync(() => File.Exists(Path.Combine(beats, "a")) && File.Exists(Path.Combine(beats, "b")), Generous, "both tasks to beat");

        var watch = Stopwatch.StartNew();
        await (await fixture.NewPluginAsync()).StopJobAsync(jobId);
        var job = await (await fixture.NewPluginAsync()).GetJobAsync(jobId);

        Assert.Equal(JobState.Cancelled, job.State);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"stop took {watch.Elapsed}");
        Assert.All(await SqueueAsync(job), e => Assert.DoesNotContain(e.State, new[] { "PENDING", "RUNNING", "COMPLETING" }));
        var tasks = await (await fixture.NewPluginAsync()).GetTasksAsync(jobId);
        Assert.All(tasks, t => Assert.Equal(JobState.Cancelled, t.State));
        var sizes = new[] { "a", "b" }.Select(f => new FileInfo(Path.Combine(beats, f)).Length).ToArray();
        await Task.Delay(1000);
        Assert.Equal(sizes, new[] { "a", "b" }.Select(f => new FileInfo(Path.Combine(beats, f)).Length).ToArray());
        Assert.False(File.Exists(Path.Combine(beats, "after-ran")));
        Assert.True((await (await fixture.NewPluginAsync()).ReadRenderLogAsync(jobId, 0)).IsComplete);
    }

    [ComponentFact(Components.Slurm)]
    public async Task RestartOfAFailedIndex_SubmitsAnArrayOfThatIndexAlone()
    {
        var marks = _scratch.Combine("marks");
        Directory.CreateDirectory(marks);
        var (jobId, _) = await SubmitAsync(
        [
            Sh("a", $"echo run >> '{marks}/a'"),
            Sh("b", $"echo run >> '{marks}/b'; test -e '{marks}/fixed'"),
            Sh("c", $"echo run >> '{marks}/c'"),
        ], "restart");
        var first = await WaitTerminalAsync(jobId);
        Assert.Equal(JobState.Failed, first.State);

        await File.WriteAllTextAsync(Path.Combine(marks, "fixed"), "yes");
        await (await fixture.NewPluginAsync()).RestartJobAsync(jobId, ["b"]);
        var restarted = await (await fixture.NewPluginAsync()).GetJobAsync(jobId);
        Assert.False(restarted.State.IsTerminal());
        Assert.Equal("2", restarted.Properties!["runs"]);
        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        // The new array holds index 1 (task b) and nothing else.
        var elements = await SqueueAsync(job);
        Assert.Equal(job.Properties!["slurmJobIds"] + "_1", Assert.Single(elements).Element);
        Assert.Single(await File.ReadAllLinesAsync(Path.Combine(marks, "a")));
        Assert.Equal(2, (await File.ReadAllLinesAsync(Path.Combine(marks, "b"))).Length);
        Assert.Single(await File.ReadAllLinesAsync(Path.Combine(marks, "c")));
        var b = await TaskAsync(jobId, "b");
        Assert.Equal(2, b.Attempts);
        Assert.Equal(0, b.ExitCode);
        var plugin = await fixture.NewPluginAsync();
        var unknown = await Assert.ThrowsAsync<FarmPluginException>(() => plugin.RestartJobAsync(jobId, ["nope"]));
        Assert.Contains("'nope'", unknown.Message, StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task HostileNames_AndArguments_RunNothing()
    {
        var trap = _scratch.Combine("trap");
        Directory.CreateDirectory(trap);
        // Names may not hold control characters (the contract refuses them); arguments and values may.
        var hostileName = $"x\"; touch '{trap}/1'; echo \"$(touch '{trap}/2')`touch '{trap}/3'` --wrap=touch {trap}/4 ' \\";
        var hostile = hostileName.Replace(" --wrap", "\n--wrap", StringComparison.Ordinal);
        var context = RenderContext.Create(hostileName);
        var plugin = await fixture.NewPluginAsync();
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var jobId = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = context,
            Name = hostileName,
            TemporaryFolder = folder,
            MaxAttempts = 1,
            Labels = new Dictionary<string, string> { ["shot"] = hostile },
            Environment = new Dictionary<string, string> { ["FARM_HOSTILE"] = hostile },
            Tasks =
            [
                new TaskSpec("echo", [Command.Of("/bin/echo", hostile), Command.Of("/bin/sh", "-c", "printf 'env=%s\\n' \"$FARM_HOSTILE\"")],
                    Labels: new Dictionary<string, string> { ["note"] = hostile }),
            ],
        });

        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(hostileName, job.Name);
        Assert.Empty(Directory.GetFileSystemEntries(trap));
        var log = await LogAsync(jobId);
        Assert.Contains($"[echo] x\"; touch '{trap}/1'", log, StringComparison.Ordinal);
        Assert.Contains($"[echo] env=x\"; touch '{trap}/1'", log, StringComparison.Ordinal);
        var (_, names, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-t", "all", "-o", "%j", "-j", job.Properties!["slurmJobIds"]);
        Assert.StartsWith("x\"; touch", names.Trim(), StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task ManyTasks_AreSplitIntoArraysOfMaxArraySize_AndAllRun()
    {
        var tasks = Enumerable.Range(0, 11).Select(i => Sh($"n{i:00}", $"echo n{i} > out-{i}.txt", outputs: [$"out-{i}.txt"])).ToList();
        tasks.Add(Sh("sum", "cat out-*.txt | wc -l > sum.txt", [.. tasks.Select(t => t.Id)], ["sum.txt"]));
        var (jobId, folder) = await SubmitAsync(tasks, "split");

        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        // 11 independent tasks: indices 0-7 and 8-10 (chunk 1 as 0-2), then the sum (ordinal 11: chunk 1, index 3).
        Assert.Equal(3, job.Properties!["slurmJobIds"].Split(',').Length);
        Assert.Equal("11", (await File.ReadAllTextAsync(Path.Combine(folder, "sum.txt"))).Trim());
        var log = await (await fixture.NewPluginAsync()).ReadTaskLogAsync(jobId, "n09", 0);
        Assert.Contains("farm: attempt 1 of 1", log.Text, StringComparison.Ordinal);
        Assert.True(log.IsComplete);
    }

    [ComponentFact(Components.Slurm)]
    public async Task Timeout_KillsTheTask_AndARetryCanSucceed()
    {
        var (jobId, folder) = await SubmitAsync(
        [
            Sh("slow", "sleep 30", timeout: TimeSpan.FromSeconds(1)),
            Sh("flaky", "if [ -e tried ]; then echo second; else touch tried; exit 9; fi"),
        ], "timeout", maxAttempts: 2);

        var watch = Stopwatch.StartNew();
        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Failed, job.State);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(25), $"a 1 s timeout took {watch.Elapsed}");
        var slow = await TaskAsync(jobId, "slow");
        Assert.Equal(124, slow.ExitCode);
        Assert.Equal(2, slow.Attempts);
        var flaky = await TaskAsync(jobId, "flaky");
        Assert.Equal(JobState.Completed, flaky.State);
        Assert.Equal(2, flaky.Attempts);
        Assert.True(File.Exists(Path.Combine(folder, "tried")));
        Assert.Contains("timed out after 1 s", await LogAsync(jobId), StringComparison.Ordinal);
    }

    [ComponentFact(Components.Slurm)]
    public async Task AJobSlurmHasForgotten_IsAnsweredFromItsFolder()
    {
        var (doneId, _) = await SubmitAsync([Sh("ok", "echo fine"), Sh("bad", "exit 4")], "forgotten");
        await WaitTerminalAsync(doneId);
        // Held in Slurm: it will never write an exit code.
        var (heldId, _) = await SubmitAsync([Sh("held", "true")], "held", configure: s => s["ExtraArgs"] = "--hold");
        var held = await (await fixture.NewPluginAsync()).GetJobAsync(heldId);
        Assert.Equal(JobState.Waiting, held.State);

        // Another workstation whose Slurm no longer knows either job (as after MinJobAge, or a controller that lost its state).
        var amnesiac = _scratch.Combine("amnesiac-bin");
        Directory.CreateDirectory(amnesiac);
        foreach (var (command, script) in new[]
        {
            ("squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"),
            ("sacct", "echo 'Slurm accounting storage is disabled'"),
            ("scancel", "exit 0"),
        })
        {
            var path = Path.Combine(amnesiac, command);
            await File.WriteAllTextAsync(path, "#!/bin/sh\n" + script + "\n");
            File.SetUnixFileMode(path, (UnixFileMode)0x1ED);
        }

        var other = await fixture.NewPluginAsync(s => s["SlurmBin"] = amnesiac);
        var done = await other.GetJobAsync(doneId);
        Assert.Equal(JobState.Failed, done.State);
        var tasks = await other.GetTasksAsync(doneId);
        Assert.Equal(0, tasks.Single(t => t.Id == "ok").ExitCode);
        Assert.Equal(4, tasks.Single(t => t.Id == "bad").ExitCode);
        Assert.Contains("[ok] fine", (await other.ReadRenderLogAsync(doneId, 0)).Text, StringComparison.Ordinal);

        var lost = await other.GetJobAsync(heldId);
        Assert.Equal(JobState.Failed, lost.State);
        // The decision is kept in the job folder: the real cluster's view agrees from now on.
        Assert.Equal(JobState.Failed, (await (await fixture.NewPluginAsync()).GetJobAsync(heldId)).State);
        await fixture.Cluster.RunAsync("scancel", held.Properties!["slurmJobIds"]);
    }

    [ComponentFact(Components.Slurm)]
    public async Task AnInterruptedSubmission_IsResumed_WithoutSubmittingTwice()
    {
        var context = RenderContext.Create("resume");
        var tasks = new[] { Sh("first", "echo one > one.txt"), Sh("second", "cat one.txt", ["first"]) };
        var (jobId, folder) = await SubmitAsync(tasks, "resume", context: context, configure: s => s["ExtraArgs"] = "--hold");
        // As if the process died between sbatch and writing the second array's id down.
        var jobFolder = new JobFolder(fixture.SharedRoot, fixture.SharedRoot, jobId);
        var record = JobRecords.Read(jobFolder)!;
        var lostId = record.Runs[0].Arrays[1].SlurmJobId!;
        record.Runs[0].Arrays[1].SlurmJobId = null;
        JobRecords.Write(jobFolder, record);

        var again = await (await fixture.NewPluginAsync()).SubmitJobAsync(new JobRequest
        {
            Context = context, Name = "resume", Tasks = tasks, TemporaryFolder = folder, MaxAttempts = 1,
        });

        Assert.Equal(jobId, again);
        Assert.Equal(lostId, JobRecords.Read(jobFolder)!.Runs[0].Arrays[1].SlurmJobId);
        var (_, comments, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-t", "all", "-o", "%k");
        Assert.Equal(2, comments.Split('\n').Count(c => c.Contains(jobId, StringComparison.Ordinal)));
        await fixture.Cluster.RunAsync("scontrol", "release", record.Runs[0].Arrays[0].SlurmJobId + "," + lostId);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);
    }

    [ComponentFact(Components.Slurm)]
    public async Task ARefusedSubmission_LeavesNoJob_AndTheSameRenderCanBeSubmittedAgain()
    {
        var plugin = await fixture.NewPluginAsync();
        var context = RenderContext.Create("refused");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var tasks = Enumerable.Range(0, 10).Select(i => Sh($"t{i}", "true")).Append(Sh("after", "true", ["t0"])).ToList();
        var request = new JobRequest
        {
            Context = context, Name = "refused", TemporaryFolder = folder, Tasks = tasks, MaxAttempts = 1,
            Settings = new Dictionary<string, string> { ["Partition"] = "no-such-partition" },
        };

        var error = await Assert.ThrowsAsync<FarmPluginException>(() => plugin.SubmitJobAsync(request));

        Assert.Contains("Invalid partition", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(await plugin.GetJobsAsync(new JobQuery(RenderContextId: context.Id)));
        var (_, comments, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-t", "all", "-o", "%k");
        Assert.DoesNotContain(context.Id.ToString("D"), comments, StringComparison.Ordinal);
        var jobId = await plugin.SubmitJobAsync(request with { Settings = new Dictionary<string, string>() });
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);
    }

    [ComponentFact(Components.Slurm)]
    public async Task NodesMountingSharedRootElsewhere_RunInTheirOwnPaths()
    {
        // The "nodes" reach the shared folder through another path (a link here, another mount point on a real cluster).
        var nodeView = _scratch.Combine("node-view");
        Directory.CreateSymbolicLink(nodeView, fixture.SharedRoot);
        var (jobId, folder) = await SubmitAsync([Sh("where", "pwd; echo hi > out.txt", outputs: ["out.txt"])], "node-root",
            configure: s => s["NodeSharedRoot"] = nodeView);

        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        Assert.Contains($"[where] {nodeView}/{jobId}", await LogAsync(jobId), StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(folder, "out.txt")));
        var (_, workDir, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-t", "all", "-o", "%Z", "-j", job.Properties!["slurmJobIds"]);
        Assert.Equal($"{nodeView}/{jobId}", workDir.Trim());
    }

    [ComponentFact(Components.Slurm)]
    public async Task ScancelFromOutside_IsCancelled_NotFailed()
    {
        var (jobId, _) = await SubmitAsync([Sh("long", "sleep 30")], "scancel-outside");
        await Eventually.WaitAsync(async () => (await (await fixture.NewPluginAsync()).GetJobAsync(jobId)).State == JobState.Running,
            Generous, "the task to run");
        var job = await (await fixture.NewPluginAsync()).GetJobAsync(jobId);

        // An operator cancels it with Slurm's own tools.
        await fixture.Cluster.RunAsync("scancel", job.Properties!["slurmJobIds"]);

        var ended = await WaitTerminalAsync(jobId);
        Assert.Equal(JobState.Cancelled, ended.State);
        var task = await TaskAsync(jobId, "long");
        Assert.Equal(JobState.Cancelled, task.State);
        Assert.NotNull(task.ExitCode);
        Assert.NotEqual(0, task.ExitCode);
    }

    [ComponentFact(Components.Slurm)]
    public async Task UnknownJobIds_AreNotFound_AndLeaveNoFolderBehind()
    {
        var plugin = await fixture.NewPluginAsync();
        var unknown = Guid.NewGuid().ToString("D");

        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.StopJobAsync(unknown));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.RestartJobAsync(unknown));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.DeleteJobAsync(unknown));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync(unknown.ToUpperInvariant()));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync("../" + unknown));

        Assert.False(Directory.Exists(Path.Combine(fixture.SharedRoot, unknown)));
    }

    [ComponentFact(Components.Slurm)]
    public async Task Delete_RemovesATerminalJob_AndRefusesARunningOne()
    {
        var (runningId, _) = await SubmitAsync([Sh("long", "sleep 30")], "delete-running");
        var plugin = await fixture.NewPluginAsync();
        var refused = await Assert.ThrowsAsync<FarmPluginException>(() => plugin.DeleteJobAsync(runningId));
        Assert.Contains("stop it", refused.Message, StringComparison.Ordinal);
        await plugin.StopJobAsync(runningId);

        await plugin.DeleteJobAsync(runningId);

        Assert.False(Directory.Exists(Path.Combine(fixture.SharedRoot, runningId)));
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync(runningId));
    }

    [ComponentFact(Components.Slurm)]
    public async Task PartitionAndPriority_ReachSbatch_AndCopiedFilesAreLinkedNotCopiedTwice()
    {
        var input = _scratch.WriteFile("input.txt", "payload " + Guid.NewGuid());
        var plugin = await fixture.NewPluginAsync(s => s["Partition"] = fixture.Cluster.OtherPartition);
        var first = RenderContext.Create("files-1");
        var second = RenderContext.Create("files-2");
        var folder1 = await plugin.CreateTemporaryFolderAsync(first);
        var folder2 = await plugin.CreateTemporaryFolderAsync(second);
        await plugin.CopyRenderFilesAsync(first, folder1, [new RenderFile(input, "in/input.txt")]);
        await plugin.CopyRenderFilesAsync(second, folder2, [new RenderFile(input, "in/input.txt")]);
        // Hard links to one stored blob: one inode, three names.
        Assert.Equal(new FileInfo(Path.Combine(folder1, "in/input.txt")).Length, new FileInfo(input).Length);
        var (_, links, _) = await fixture.Cluster.RunAsync("stat", "-c", "%h", Path.Combine(folder1, "in/input.txt"));
        Assert.Equal("3", links.Trim());

        var jobId = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = first, Name = "files", TemporaryFolder = folder1, Priority = 10, MaxAttempts = 1, Files = ["in/input.txt"],
            Tasks = [Sh("read", "cat in/input.txt")],
        });
        var job = await WaitTerminalAsync(jobId);

        Assert.Equal(JobState.Completed, job.State);
        Assert.Contains("[read] payload", await LogAsync(jobId), StringComparison.Ordinal);
        var (_, detail, _) = await fixture.Cluster.RunAsync("squeue", "-h", "-t", "all", "-o", "%P|%y", "-j", job.Properties!["slurmJobIds"]);
        Assert.Equal("render|800", detail.Trim());
    }
}

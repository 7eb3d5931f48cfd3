using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

public sealed class ReliabilityTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    private static async Task WaitTaskAsync(BaseFarmPlugin plugin, string jobId, Func<FarmApi.TaskInfo, bool> condition, string what, FarmCluster farm)
    {
        try
        {
            await Eventually.WaitAsync(async () => condition((await plugin.GetTasksAsync(jobId))[0]), Long, what, TimeSpan.FromMilliseconds(100));
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException(ex.Message + "\n" + farm.Diagnostics(), ex);
        }
    }

    [Fact]
    public async Task Lost_agent_task_is_requeued_after_the_lease_and_its_late_completion_is_rejected()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var a = farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var request = await Jobs.RequestAsync(plugin, "lost", [Jobs.Shell("t", "sleep 2; echo done by $FARM_AGENT")]);
        var jobId = await plugin.SubmitJobAsync(request);
        await WaitTaskAsync(plugin, jobId, t => t.State == JobState.Running && t.Node == "a", "the task to run on a", farm);

        // a stops answering (as a hung or partitioned node) while its task keeps running.
        a.Kill(19);
        farm.StartAgent("b", "command");
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        var task = (await plugin.GetTasksAsync(jobId))[0];
        Assert.Equal("b", task.Node);
        Assert.Equal(2, task.Attempts);

        a.Kill(18);
        await a.WaitForOutputAsync("rejected", TimeSpan.FromSeconds(30));
        Assert.Equal(1, Db.CompletionsByTask(farm.DataDirectory, jobId)["t"]);
        Assert.Equal(JobState.Completed, (await plugin.GetJobAsync(jobId)).State);
        var log = await plugin.ReadTaskLogAsync(jobId, "t", 0);
        Assert.Contains("done by b", log.Text);
        Assert.DoesNotContain("done by a", log.Text);
    }

    [Fact]
    public async Task Chaos_server_killed_twice_and_an_agent_killed_still_completes_each_task_once()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command", "--slots", "2");
        var b = farm.StartAgent("b", "command", "--slots", "2");
        var plugin = await farm.CreatePluginAsync();
        var lines = farm.Temp.Combine("lines.txt");
        var tasks = Enumerable.Range(0, 300)
            .Select(i => Jobs.Shell($"t{i:000}", $"echo \"$FARM_TASK_ID $FARM_ATTEMPT $FARM_AGENT\" >> '{lines}'; sleep 0.03"))
            .ToList();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "chaos", tasks, maxAttempts: 10));

        async Task WaitCompletedAsync(int count)
        {
            await Eventually.WaitAsync(async () =>
            {
                try
                {
                    return (await plugin.GetJobAsync(jobId)).Progress.CompletedTasks >= count;
                }
                catch (FarmUnavailableException)
                {
                    return false;
                }
            }, Long, $"{count} completed tasks", TimeSpan.FromMilliseconds(50));
        }

        await WaitCompletedAsync(40);
        await farm.RestartServerAsync();
        await WaitCompletedAsync(120);
        b.Kill(9);
        farm.StartAgent("b", "command", "--slots", "2");
        await WaitCompletedAsync(200);
        await farm.RestartServerAsync();
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());

        var completions = Db.CompletionsByTask(farm.DataDirectory, jobId);
        Assert.Equal(300, completions.Count);
        Assert.All(completions, pair => Assert.Equal(1, pair.Value));

        var byTask = File.ReadAllLines(lines).Select(l => l.Split(' ')).GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.ToList());
        Assert.Equal(300, byTask.Count);
        foreach (var (task, runs) in byTask.Where(p => p.Value.Count > 1))
        {
            // Only the killed agent's tasks may have run twice; the server's restarts never cause a second run.
            Assert.True(runs.Any(r => r[2] == "b"), $"{task} ran {runs.Count} times without agent b being involved: {string.Join(" | ", runs.Select(r => string.Join(' ', r)))}");
        }
    }

    [Fact]
    public async Task Stopping_agent_hands_back_its_task_without_counting_an_attempt()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var a = farm.StartAgent("a", "command", "--drain-grace-ms", "500");
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "drain",
            [Jobs.Shell("t", "echo task-began; if [ \"$FARM_AGENT\" = a ]; then sleep 30; fi; echo finished on $FARM_AGENT")], maxAttempts: 1));
        await Eventually.WaitAsync(async () => (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text.Contains("task-began"), Long, "the task to start");

        a.Kill(15);
        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var task = (await plugin.GetTasksAsync(jobId))[0];
        Assert.Equal(JobState.Waiting, task.State);
        Assert.Equal(0, task.Attempts);

        farm.StartAgent("b", "command");
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Equal(1, (await plugin.GetTasksAsync(jobId))[0].Attempts);
    }

    [Fact]
    public async Task Stopping_agent_finishes_a_short_task_within_its_grace()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var a = farm.StartAgent("a", "command", "--drain-grace-ms", "20000");
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "drain-finish", [Jobs.Shell("t", "echo task-began; sleep 1; echo finished")]));
        await Eventually.WaitAsync(async () => (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text.Contains("task-began"), Long, "the task to start");
        a.Kill(15);
        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var job = await plugin.GetJobAsync(jobId);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
    }

    [Fact]
    public async Task Agent_failing_a_job_three_times_is_kept_off_it_while_another_agent_can_run_it()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("b", "command");
        var plugin = await farm.CreatePluginAsync();
        // b is busy (alive, heartbeating) with a higher-priority job while a fails the other one, until the test releases it.
        var release = farm.Temp.Combine("release");
        var busy = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "busy",
            [Jobs.Shell("long", $"echo task-began; while [ ! -f '{release}' ]; do sleep 0.1; done")], priority: 90));
        await Eventually.WaitAsync(async () => (await plugin.ReadTaskLogAsync(busy, "long", 0)).Text.Contains("task-began"), Long, "b to be busy");
        farm.StartAgent("a", "command");
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "blocklist",
            [Jobs.Shell("t", "test \"$FARM_AGENT\" != a")], maxAttempts: 10));
        await WaitTaskAsync(plugin, jobId, t => t.Attempts == 3 && t.State == JobState.Waiting, "three failures on a", farm);
        await Task.Delay(1000);
        var task = (await plugin.GetTasksAsync(jobId))[0];
        Assert.Equal(3, task.Attempts);
        Assert.Equal(JobState.Waiting, task.State);

        File.WriteAllText(release, "go");
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        task = (await plugin.GetTasksAsync(jobId))[0];
        Assert.Equal("b", task.Node);
        Assert.Equal(4, task.Attempts);
    }

    [Fact]
    public async Task Short_tasks_leased_ahead_behind_a_long_one_are_handed_back_and_run_once_elsewhere()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        // Short tasks make a lease ahead; the long one then holds its only slot while the tasks it leased after it wait there.
        var tasks = Enumerable.Range(0, 30).Select(i => new TaskSpec($"s{i:00}", [new Command("true", [])])).ToList();
        tasks.Add(Jobs.Shell("long", "sleep 4"));
        tasks.AddRange(Enumerable.Range(0, 6).Select(i => new TaskSpec($"t{i}", [new Command("true", [])])));
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "ahead", tasks));
        await Eventually.WaitAsync(async () => (await plugin.GetTasksAsync(jobId)).Single(t => t.Id == "long").State == JobState.Running, Long,
            "the long task to start");
        farm.StartAgent("b", "command");

        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        var all = await plugin.GetTasksAsync(jobId);
        Assert.All(all, t => Assert.Equal(1, t.Attempts));
        Assert.Equal("a", all.Single(t => t.Id == "long").Node);
        Assert.Contains(all, t => t.Id.StartsWith('t') && t.Node == "b");
        Assert.Contains("handed back, not counted as an attempt", (await plugin.ReadRenderLogAsync(jobId, 0)).Text);
        Assert.All(Db.CompletionsByTask(farm.DataDirectory, jobId), pair => Assert.Equal(1, pair.Value));
    }

    [Fact]
    public async Task A_lone_agent_is_not_blocklisted_so_the_job_uses_all_its_attempts()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "lone", [Jobs.Shell("t", "echo failing; exit 3")], maxAttempts: 4));
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.Equal(JobState.Failed, job.State);
        var task = (await plugin.GetTasksAsync(jobId))[0];
        Assert.Equal(4, task.Attempts);
        Assert.Equal(3, task.ExitCode);
        Assert.Contains("exited with code 3", (await plugin.ReadRenderLogAsync(jobId, 0)).Text);
    }

    [Fact]
    public async Task Timeout_kills_the_task_and_stop_then_restart_runs_it_again()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();

        var timedOut = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "timeout",
            [Jobs.Shell("t", "sleep 30", timeout: TimeSpan.FromSeconds(1))], maxAttempts: 1));
        var job = await Jobs.WaitTerminalAsync(plugin, timedOut, Long);
        Assert.Equal(JobState.Failed, job.State);
        Assert.Contains("timed out", (await plugin.ReadTaskLogAsync(timedOut, "t", 0)).Text);

        var pidFile = farm.Temp.Combine("task.pid");
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "stop",
            [Jobs.Shell("t", $"if [ -f marker ]; then echo second run; exit 0; fi; touch marker; echo $$ > '{pidFile}'; exec sleep 30")]));
        await Eventually.WaitAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).Trim().Length > 0, Long, "the task to start");
        var pid = int.Parse(File.ReadAllText(pidFile).Trim());
        await plugin.StopJobAsync(jobId);
        Assert.Equal(JobState.Cancelled, (await plugin.GetJobAsync(jobId)).State);
        await Eventually.WaitAsync(() => !ProcessTracker.IsAlive(pid) || File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] == "Z", Long, "the stopped task's process to die");

        await plugin.RestartJobAsync(jobId);
        job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Contains("second run", (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text);
    }

    [Fact]
    public async Task Server_down_longer_than_the_lease_gives_running_tasks_a_fresh_grace_so_nothing_runs_twice()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "grace", [Jobs.Shell("t", "echo task-began; sleep 4; echo task-ended")]));
        await Eventually.WaitAsync(async () => (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text.Contains("task-began"), Long, "the task to start");

        farm.Server!.Kill(9);
        await Task.Delay(3500);
        await farm.StartServerAsync();
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Equal(1, (await plugin.GetTasksAsync(jobId))[0].Attempts);
        Assert.Equal(1, Db.CompletionsByTask(farm.DataDirectory, jobId)["t"]);
    }

    [Fact]
    public async Task Task_killed_by_a_signal_fails_its_attempt_naming_the_signal_and_runs_again()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var pidFile = farm.Temp.Combine("task.pid");
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "killed",
            [Jobs.Shell("t", $"if [ \"$FARM_ATTEMPT\" = 2 ]; then echo second run; exit 0; fi; echo $$ > '{pidFile}'; exec sleep 30")], maxAttempts: 2));
        await Eventually.WaitAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).Trim().Length > 0, Long, "the task to start");

        ProcessTracker.Kill(int.Parse(File.ReadAllText(pidFile).Trim()), 9);

        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Equal(2, (await plugin.GetTasksAsync(jobId))[0].Attempts);
        var log = (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text;
        Assert.Contains("exited with code 137 (killed by signal 9, SIGKILL)", log);
        Assert.Contains("second run", log);
    }

    [Fact]
    public async Task Killed_agent_started_again_kills_its_leftover_task_and_the_task_runs_again_before_the_lease_lapses()
    {
        await using var farm = new FarmCluster();
        // A lease far longer than the test: only the agent's own recovery can requeue the task in time.
        farm.ServerTimings = ["--lease-ms", "120000", "--heartbeat-ms", "300", "--lease-check-ms", "200"];
        await farm.StartServerAsync();
        var a = farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var pidFile = farm.Temp.Combine("task.pid");
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "crash",
            [Jobs.Shell("t", $"if [ \"$FARM_ATTEMPT\" = 2 ]; then echo second run; exit 0; fi; echo $$ > '{pidFile}'; exec sleep 60")]));
        await Eventually.WaitAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).Trim().Length > 0, Long, "the task to start");
        var pid = int.Parse(File.ReadAllText(pidFile).Trim());

        a.Kill(9);
        await a.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.True(ProcessTracker.IsAlive(pid), "the task should outlive its agent (it runs in a session of its own)");
        farm.StartAgent("a", "command");

        var job = await Jobs.WaitTerminalAsync(plugin, jobId, TimeSpan.FromSeconds(60));
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        await Eventually.WaitAsync(() => !ProcessTracker.IsAlive(pid) || File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] == "Z", Long, "the leftover task to die");
        Assert.Equal(2, (await plugin.GetTasksAsync(jobId))[0].Attempts);
        var log = (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text;
        Assert.Contains("stopped unexpectedly", log);
        Assert.Contains("second run", log);
    }

    [Fact]
    public async Task Two_agents_cannot_share_a_work_folder()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var first = farm.StartAgent("a", "command");
        await first.WaitForOutputAsync("serving", Long);
        var second = farm.StartAgent("a", "command");
        Assert.Equal(1, await second.WaitForExitAsync(Long));
        Assert.Contains("another agent is using the work folder", second.Output);
        Assert.False(first.Process.HasExited);
    }

    [Fact]
    public async Task Task_output_reaches_the_render_log_while_the_task_runs()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "streaming", [Jobs.Shell("t", "echo first line; sleep 8; echo last line")]));
        var offset = 0L;
        var text = string.Empty;
        await Eventually.WaitAsync(async () =>
        {
            var chunk = await plugin.ReadRenderLogAsync(jobId, offset);
            offset = chunk.NextOffset;
            text += chunk.Text;
            return text.Contains("[t] first line");
        }, Long, "the first line in the render log");
        Assert.Equal(JobState.Running, (await plugin.GetJobAsync(jobId)).State);
        Assert.DoesNotContain("last line", text);
        var end = await plugin.ReadRenderLogAsync(jobId, offset);
        Assert.False(end.IsComplete);
        Assert.Equal(offset + System.Text.Encoding.UTF8.GetByteCount(end.Text), end.NextOffset);
    }
}

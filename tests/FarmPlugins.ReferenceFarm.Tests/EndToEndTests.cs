using FarmApi;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class EndToEndTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Job_with_files_dependencies_outputs_and_logs_runs_end_to_end()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var scene = farm.Temp.WriteFile("scene/input.txt", "hello farm\n");
        var request = await Jobs.RequestAsync(plugin, "e2e",
        [
            Jobs.Shell("t1", "echo tile one; cat input.txt > out/t1.txt", outputs: ["out/t1.txt"]),
            Jobs.Shell("t2", "echo tile two; echo two > out/t2.txt", outputs: ["out/t2.txt"]),
            Jobs.Shell("merge", "cat out/t1.txt out/t2.txt > out/merged.txt; echo merged é", dependsOn: ["t1", "t2"], outputs: ["out/merged.txt"]),
        ], [new RenderFile(scene, "input.txt")]);
        // The job folder needs its out/ folder: the first tasks make it.
        request = request with
        {
            Tasks =
            [
                Jobs.Shell("t1", "mkdir -p out; echo tile one; cat input.txt > out/t1.txt", outputs: ["out/t1.txt"]),
                Jobs.Shell("t2", "mkdir -p out; echo tile two; echo two > out/t2.txt", outputs: ["out/t2.txt"]),
                Jobs.Shell("merge", "mkdir -p out; cat out/t1.txt out/t2.txt > out/merged.txt; echo merged é", dependsOn: ["t1", "t2"], outputs: ["out/merged.txt"]),
            ],
        };

        var jobId = await plugin.SubmitJobAsync(request);
        Assert.Equal(jobId, await plugin.SubmitJobAsync(request));
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Equal(3, job.Progress.CompletedTasks);

        var tasks = await plugin.GetTasksAsync(jobId);
        Assert.Equal(["t1", "t2", "merge"], tasks.Select(t => t.Id));
        Assert.All(tasks, t => Assert.Equal(1, t.Attempts));

        var log = await plugin.ReadRenderLogAsync(jobId, 0);
        Assert.Contains("[t1] tile one", log.Text);
        Assert.Contains("[merge] merged é", log.Text);
        Assert.True(log.IsComplete);
        var taskLog = await plugin.ReadTaskLogAsync(jobId, "t2", 0);
        Assert.Contains("tile two", taskLog.Text);
        Assert.DoesNotContain("tile one", taskLog.Text);

        var outputs = farm.Temp.Combine("fetched");
        var written = await plugin.FetchOutputsAsync(jobId, outputs);
        Assert.Equal(3, written.Count);
        Assert.Equal("hello farm\ntwo\n", File.ReadAllText(Path.Combine(outputs, "out", "merged.txt")));
        Assert.Empty(await plugin.FetchOutputsAsync(jobId, outputs));

        await plugin.DeleteJobAsync(jobId);
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync(jobId));
    }

    [Fact]
    public async Task Files_a_task_produces_reach_the_tasks_that_depend_on_it_on_another_agent_latest_version_winning()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        // Hosts pin tasks to agents: x runs "hx" tasks, y runs "hy" ones.
        farm.StartAgent("x", "hx");
        farm.StartAgent("y", "hy");
        var plugin = await farm.CreatePluginAsync();
        var request = await Jobs.RequestAsync(plugin, "produced",
        [
            Jobs.Shell("a", "mkdir -p d; echo a > d/a.txt; echo one > shared.txt", host: "hx"),
            Jobs.Shell("b", "cat d/a.txt; echo two > shared.txt; echo b > b.txt", dependsOn: ["a"], host: "hy"),
            Jobs.Shell("c", "cat d/a.txt b.txt shared.txt > result.txt", dependsOn: ["b"], outputs: ["result.txt"], host: "hx"),
        ]);

        var jobId = await plugin.SubmitJobAsync(request);

        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Equal(["x", "y", "x"], (await plugin.GetTasksAsync(jobId)).Select(t => t.Node));
        var fetched = farm.Temp.Combine("fetched");
        Assert.Single(await plugin.FetchOutputsAsync(jobId, fetched));
        // c (back on x) sees a's file through b, and b's version of the file both wrote, though x had a's version already.
        Assert.Equal("a\nb\ntwo\n", File.ReadAllText(Path.Combine(fetched, "result.txt")));
    }

    [Fact]
    public async Task Installation_metadata_names_the_host_and_agents_map_it_to_their_own_executable()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var script = farm.Temp.WriteFile("bin/fakerender", "#!/bin/sh\necho rendered by fakerender \"$@\"\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        farm.StartAgent("a", "command,fakerender", "--host-path", $"fakerender={script}");
        var plugin = await farm.CreatePluginAsync();
        await FarmPlugins.TestSupport.Eventually.WaitAsync(async () => (await plugin.TestAsync()).Passed, Long, "the agent to be seen");
        var installation = await plugin.GetInstallationMetadataAsync("fakerender");
        Assert.Equal("fakerender", installation.Executable);
        Assert.Equal(Path.GetDirectoryName(script), installation.InstallRoot);

        var request = await Jobs.RequestAsync(plugin, "mapped",
            [new TaskSpec("t", [new Command(installation.Executable, ["frame", "7"])], Host: "fakerender")]);
        var jobId = await plugin.SubmitJobAsync(request);
        Assert.Equal(JobState.Completed, (await Jobs.WaitTerminalAsync(plugin, jobId, Long)).State);
        Assert.Contains("rendered by fakerender frame 7", (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text);
    }
}

using System.Diagnostics;
using Xunit;

namespace FarmApi.Hosting.Tests;

/// <summary>samples/SampleFarm as a third party ships it: its build output dropped into a resources path.</summary>
public sealed class SampleFarmTests : HostingTestBase
{
    [Fact]
    public void BuildOutput_HoldsNoFarmApi_TheHostProvidesIt()
    {
        var output = Path.Combine(ResourcesPath.FixturesRoot, "SampleFarm");

        Assert.True(File.Exists(Path.Combine(output, "SampleFarm.dll")));
        Assert.False(File.Exists(Path.Combine(output, "FarmApi.dll")));
        Assert.False(File.Exists(Path.Combine(output, "Microsoft.Extensions.Logging.Abstractions.dll")));
    }

    [Fact]
    public async Task DroppedIntoAResourcesPath_IsListed_Loads_AndRunsAOneTaskJob()
    {
        var resources = NewResources();
        var path = resources.Add("SampleFarm");
        Environment["FARM_RESOURCES"] = resources.Path;
        var manager = NewManager();

        var info = Assert.Single(manager.GetPlugins());
        Assert.Equal(("Sample Farm", "2.0", FarmPluginStatus.Available, path), (info.Name, info.ApiVersion, info.Status, info.AssemblyPath));

        var plugin = await LoadAsync(manager, "sample farm");
        var render = NewRender("sample");
        var folder = await plugin.CreateTemporaryFolderAsync(render);
        var id = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = render,
            Name = "sample",
            TemporaryFolder = folder,
            Tasks = [new TaskSpec("hello", [Command.Of("/bin/sh", "-c", "echo rendered > frame.txt; echo hello from the sample farm")], Outputs: ["frame.txt"])],
        });

        var job = await WaitForEndAsync(plugin, id);
        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(new JobProgress(1, 1, 0, 0), job.Progress);
        Assert.Equal("rendered\n", await File.ReadAllTextAsync(Path.Combine(folder, "frame.txt")));
        var log = await plugin.ReadRenderLogAsync(id, 0);
        Assert.Contains("hello from the sample farm", log.Text);
        Assert.True(log.IsComplete);
        Assert.Equal(id, await plugin.SubmitJobAsync(new JobRequest { Context = render, Name = "again", TemporaryFolder = folder, Tasks = [new TaskSpec("x", [Command.Of("false")])] }));

        // The job id is enough for another host process: a fresh manager and instance read the same job.
        await using var other = NewManager(resources);
        await using var fresh = await other.LoadAsync("Sample Farm");
        Assert.Equal(JobState.Completed, (await fresh.GetJobAsync(id)).State);
    }

    [Fact]
    public async Task FailingCommand_EndsFailed_WithTheExitCodeInTheLog()
    {
        var resources = NewResources();
        resources.Add("SampleFarm");
        var manager = NewManager(resources);
        var plugin = await LoadAsync(manager, "Sample Farm");

        var job = await SubmitOneTaskJobAsync(plugin, "/bin/sh", "-c", "exit 3");
        job = await WaitForEndAsync(plugin, job.Id);

        Assert.Equal(JobState.Failed, job.State);
        Assert.Contains("exited with 3", (await plugin.ReadRenderLogAsync(job.Id, 0)).Text);
        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync("sample-0000"));
    }

    [Fact]
    public async Task SampleHost_LoadsTheSampleFarmFromAResourcesPath_AndItsJobCompletes()
    {
        var resources = NewResources();
        resources.Add("SampleFarm");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(ResourcesPath.FixturesRoot, "SampleHost", "SampleHost.dll"));
        start.ArgumentList.Add("--resources");
        start.ArgumentList.Add(resources.Path);
        start.Environment.Remove("FARM_RESOURCES");
        start.Environment["FARM_DATA"] = Data.Path;

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;

        Assert.True(process.ExitCode == 0, output);
        Assert.Contains("Loaded Sample Farm", output);
        Assert.Contains("rendered 18 bytes", output); // the staged scene.txt, counted on the farm
        Assert.Matches(@"Job sample-[0-9a-f]{32}: Completed \(1/1 tasks\)", output);
    }

    private static async Task<Job> WaitForEndAsync(BaseFarmPlugin plugin, string id)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var job = await plugin.GetJobAsync(id, timeout.Token);
            if (job.State.IsTerminal())
            {
                return job;
            }

            await Task.Delay(50, timeout.Token);
        }
    }
}

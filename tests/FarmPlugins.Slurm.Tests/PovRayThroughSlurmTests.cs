using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.LocalQueue;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.Slurm.Tests;

/// <summary>The hosts' POV-Ray tiled render, submitted unchanged, through Slurm and through LocalQueue: the same pixels.</summary>
[Collection(SlurmCollection.Name)]
public sealed class PovRayThroughSlurmTests(SlurmFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _dir = new("slurm-povray");
    private LocalQueuePlugin? _localQueue;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_localQueue is not null)
        {
            await _localQueue.DisposeAsync();
            foreach (var pid in LocalQueuePlugin.AgentProcessIds(_dir.Combine("localqueue")))
            {
                ProcessTracker.Kill(pid);
            }
        }

        _dir.Dispose();
    }

    [ComponentFact(Components.Slurm, Components.PovRay)]
    public async Task TiledFrames_ThroughSlurm_EqualTheSameRenderThroughLocalQueue_PixelForPixel()
    {
        var povray = Components.RequireExecutable("povray", "apt-get install -y povray");
        var scene = await WriteSceneAsync();
        var settings = new RenderSettings { Frames = FrameList.Parse("1-2"), Size = new ImageSize(64, 48), Tiles = new TileGrid(2, 2) };
        var slurm = await fixture.NewPluginAsync(s => s["PovRay"] = povray);
        _localQueue = new LocalQueuePlugin();
        await _localQueue.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            DataDirectory = _dir.Combine("localqueue"),
            Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
            {
                ["Agents"] = "2", ["IdleSeconds"] = "5", ["HeartbeatSeconds"] = "1", ["LeaseSeconds"] = "10",
                ["PovRay"] = povray, ["FarmTools"] = SlurmFixture.FarmToolsExecutable,
            },
        });

        var throughSlurm = await RenderAsync(slurm, scene, settings, "slurm");
        var throughLocalQueue = await RenderAsync(_localQueue, scene, settings, "localqueue-out");

        var tasks = await (await fixture.NewPluginAsync()).GetTasksAsync(throughSlurm.Submission.JobId);
        Assert.Equal(10, tasks.Count);
        Assert.All(tasks, t => Assert.Equal(JobState.Completed, t.State));
        // 10 tasks with MaxArraySize 8: the tiles span two chunks, so the merges wait on elements of two arrays.
        Assert.True(throughSlurm.Job.Properties!["slurmJobIds"].Split(',').Length >= 3, throughSlurm.Job.Properties["slurmJobIds"]);
        Assert.Equal(2, throughSlurm.FetchedFiles.Count);
        foreach (var output in throughSlurm.Submission.Plan.Outputs)
        {
            var a = await PngImage.LoadAsync(_dir.Combine("slurm", output));
            var b = await PngImage.LoadAsync(_dir.Combine("localqueue-out", output));
            Assert.Equal(0, ImageComparison.CountDifferentPixels(a, b));
        }
    }

    private Task<RenderResult> RenderAsync(BaseFarmPlugin farm, string scene, RenderSettings settings, string output) =>
        PovRayFarmRender.RenderAsync(farm, scene, settings, _dir.Combine(output));

    private Task<string> WriteSceneAsync() => PovRayFarmRender.WriteSceneAsync(_dir);
}

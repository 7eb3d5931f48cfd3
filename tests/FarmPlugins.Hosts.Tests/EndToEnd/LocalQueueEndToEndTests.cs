using FarmApi;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.Hosts.Tests.EndToEnd;

/// <summary>Real renders through the LocalQueue farm: its agents run the tasks, the flow fetches the frames.</summary>
public sealed class LocalQueueEndToEndTests : IAsyncLifetime
{
    private readonly TempDir _dir = new("hostse2e");
    private BaseFarmPlugin _farm = null!;

    public async Task InitializeAsync()
    {
        var plugin = new FarmPlugins.LocalQueue.LocalQueuePlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            DataDirectory = _dir.Combine("data"),
            Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
            {
                ["Agents"] = "2",
                ["IdleSeconds"] = "5",
                ["HeartbeatSeconds"] = "1",
                ["LeaseSeconds"] = "10",
                ["PovRay"] = Components.RequireExecutable("povray", "apt-get install -y povray"),
                ["FarmTools"] = LocalTaskRunner.FarmToolsExecutable,
            },
        });
        _farm = plugin;
    }

    public async Task DisposeAsync()
    {
        await _farm.DisposeAsync();
        _dir.Dispose();
    }

    [ComponentFact(Components.PovRay)]
    public async Task TiledFrames_ThroughLocalQueue_EqualWholeFrames_PixelForPixel()
    {
        var scene = await TestScenes.WritePovRaySceneAsync(_dir);
        var flow = new RenderFlow(_farm);
        var settings = new RenderSettings { Frames = FrameList.Parse("1-2"), Size = new ImageSize(64, 48) };

        var whole = await RenderAsync(flow, scene, settings, "whole");
        var tiled = await RenderAsync(flow, scene, settings with { Tiles = new TileGrid(2, 2) }, "tiled");

        var tasks = await _farm.GetTasksAsync(tiled.Submission.JobId);
        Assert.Equal(10, tasks.Count);
        Assert.All(tasks, t => Assert.Equal(JobState.Completed, t.State));
        Assert.Equal(2, tasks.Count(t => t.Id.StartsWith("merge-", StringComparison.Ordinal)));
        foreach (var output in whole.Submission.Plan.Outputs)
        {
            var a = await PngImage.LoadAsync(_dir.Combine("whole", output));
            var b = await PngImage.LoadAsync(_dir.Combine("tiled", output));
            Assert.Equal(0, ImageComparison.CountDifferentPixels(a, b));
        }
    }

    [ComponentFact(Components.PovRay)]
    public async Task SixFrames_Chunk2_ThroughLocalQueue_MakeThreeTasks_AndSixDifferentFrames()
    {
        var scene = await TestScenes.WritePovRaySceneAsync(_dir);
        var result = await RenderAsync(new RenderFlow(_farm), scene,
            new RenderSettings { Frames = FrameList.Parse("1-6"), Chunk = 2, Size = new ImageSize(48, 32) }, "anim");

        var tasks = await _farm.GetTasksAsync(result.Submission.JobId);
        Assert.Equal(3, tasks.Count);
        Assert.Equal(6, result.FetchedFiles.Count);
        var frames = new List<PngImage>();
        foreach (var file in result.FetchedFiles.Order())
        {
            frames.Add(await PngImage.LoadAsync(file));
        }

        for (var i = 1; i < frames.Count; i++)
        {
            Assert.True(ImageComparison.CountDifferentPixels(frames[i - 1], frames[i]) > 0, $"frames {i} and {i + 1} are identical");
        }
    }

    private async Task<RenderResult> RenderAsync(RenderFlow flow, string scene, RenderSettings settings, string output)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var result = await flow.RenderAsync(new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = settings,
            OutputFolder = _dir.Combine(output),
            PollInterval = TimeSpan.FromMilliseconds(100),
        }, cancellationToken: timeout.Token);
        Assert.True(result.Job.State == JobState.Completed, $"job {result.Job.Id} ended {result.Job.State}");
        return result;
    }
}

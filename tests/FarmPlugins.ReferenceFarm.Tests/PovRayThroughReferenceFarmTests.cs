using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;
using FarmPlugins.LocalQueue;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>The hosts' POV-Ray tiled render, submitted unchanged, through the ReferenceFarm (two agents, so a frame's
/// tiles and its merge run on different nodes) and through LocalQueue: the same pixels.</summary>
public sealed class PovRayThroughReferenceFarmTests : IAsyncLifetime
{
    private readonly FarmCluster _farm = new();
    private LocalQueuePlugin? _localQueue;

    private static string FarmToolsExecutable => Path.Combine(FarmCluster.RepoRoot, "out", "resources", "Tools", "FarmTools", FarmTools.ExecutableName);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_localQueue is not null)
        {
            await _localQueue.DisposeAsync();
            foreach (var pid in LocalQueuePlugin.AgentProcessIds(_farm.Temp.Combine("localqueue")))
            {
                ProcessTracker.Kill(pid);
            }
        }

        await _farm.DisposeAsync();
    }

    [ComponentFact(Components.PovRay)]
    public async Task TiledFrames_ThroughTheReferenceFarm_EqualTheSameRenderThroughLocalQueue_PixelForPixel()
    {
        var povray = Components.RequireExecutable("povray", "apt-get install -y povray");
        Assert.True(File.Exists(FarmToolsExecutable), $"{FarmToolsExecutable} is missing: build HostAdapters/FarmTools");
        await _farm.StartServerAsync();
        foreach (var node in new[] { "node1", "node2" })
        {
            _farm.StartAgent(node, "povray,farm-tools,command", "--host-path", $"farm-tools={FarmToolsExecutable}");
        }

        var probe = await _farm.CreatePluginAsync();
        await Eventually.WaitAsync(async () => (await probe.TestAsync()).Checks.Any(c => c.Detail.StartsWith("2 agent", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), "both agents to be seen");
        var installation = await probe.GetInstallationMetadataAsync("povray");
        Assert.Equal("povray", installation.Executable);
        Assert.StartsWith("3.7", installation.Version, StringComparison.Ordinal);
        var scene = await WriteSceneAsync();
        var settings = new RenderSettings { Frames = FrameList.Parse("1-2"), Size = new ImageSize(64, 48), Tiles = new TileGrid(2, 2) };
        _localQueue = new LocalQueuePlugin();
        await _localQueue.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            DataDirectory = _farm.Temp.Combine("localqueue"),
            Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
            {
                ["Agents"] = "2", ["IdleSeconds"] = "5", ["HeartbeatSeconds"] = "1", ["LeaseSeconds"] = "10",
                ["PovRay"] = povray, ["FarmTools"] = FarmToolsExecutable,
            },
        });

        var throughReferenceFarm = await RenderAsync(await _farm.CreatePluginAsync(), scene, settings, "referencefarm");
        var throughLocalQueue = await RenderAsync(_localQueue, scene, settings, "localqueue-out");

        var tasks = await (await _farm.CreatePluginAsync()).GetTasksAsync(throughReferenceFarm.Submission.JobId);
        Assert.Equal(10, tasks.Count);
        Assert.All(tasks, t => Assert.Equal(JobState.Completed, t.State));
        // A merge used tiles rendered on the other node: they reached it although the host declares only the frames.
        Assert.Contains(tasks.Where(t => t.Id.StartsWith("merge-", StringComparison.Ordinal)), merge =>
            tasks.Any(tile => tile.Id.StartsWith(merge.Id["merge-".Length..] + "-t", StringComparison.Ordinal) && tile.Node != merge.Node));
        Assert.Equal(2, throughReferenceFarm.FetchedFiles.Count);
        foreach (var output in throughReferenceFarm.Submission.Plan.Outputs)
        {
            var a = await PngImage.LoadAsync(_farm.Temp.Combine("referencefarm", output));
            var b = await PngImage.LoadAsync(_farm.Temp.Combine("localqueue-out", output));
            Assert.Equal(0, ImageComparison.CountDifferentPixels(a, b));
        }
    }

    private async Task<RenderResult> RenderAsync(BaseFarmPlugin farm, string scene, RenderSettings settings, string output)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = await new RenderFlow(farm).RenderAsync(new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = settings,
            OutputFolder = _farm.Temp.Combine(output),
            PollInterval = TimeSpan.FromMilliseconds(100),
        }, cancellationToken: timeout.Token);
        Assert.True(result.Job.State == JobState.Completed, $"job {result.Job.Id} on {farm.Name} ended {result.Job.State}\n{_farm.Diagnostics()}");
        return result;
    }

    /// <summary>A scene with an include in a sub-folder and an image map: files the host collects and the farm stages.</summary>
    private async Task<string> WriteSceneAsync()
    {
        _farm.Temp.WriteFile("scene/inc/look.inc", "#declare Ball = sphere { <0, 0.6, 0>, 0.6 pigment { rgb <1, 0.4, 0.1> } finish { phong 0.8 } }\n");
        var texture = new PngImage(8, 8);
        for (var y = 0; y < 8; y++)
        {
            for (var x = 0; x < 8; x++)
            {
                texture.Set(x, y, 0, (x + y) % 2 == 0 ? 230 : 20);
                texture.Set(x, y, 1, 20 * x);
                texture.Set(x, y, 2, 200);
            }
        }

        await texture.SaveAsync(_farm.Temp.Combine("scene", "maps", "checker.png"));
        return _farm.Temp.WriteFile("scene/scene.pov", """
            #version 3.7;
            global_settings { assumed_gamma 1.0 }
            #include "inc/look.inc"
            camera { location <0, 1.2, -3.5> look_at <0, 0.5, 0> }
            light_source { <3, 5, -4> color rgb 1 }
            object { Ball translate <-0.7 + 1.4 * clock, 0, 0> }
            plane { y, 0 pigment { image_map { png "maps/checker.png" } rotate x*90 scale 0.8 } }
            box { <0.6, 0, 0.4>, <1.2, 0.5, 1.0> pigment { rgb <0.2, 0.5, 1> } rotate y * 360 * clock }
            """);
    }
}

using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Imaging;
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

    private Task<RenderResult> RenderAsync(BaseFarmPlugin farm, string scene, RenderSettings settings, string output) =>
        PovRayFarmRender.RenderAsync(farm, scene, settings, _farm.Temp.Combine(output), diagnostics: _farm.Diagnostics);

    private Task<string> WriteSceneAsync() => PovRayFarmRender.WriteSceneAsync(_farm.Temp);
}

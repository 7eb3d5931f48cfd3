using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.LocalQueue;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>The hosts' POV-Ray tiled render, submitted unchanged to Qarnot, against the same render on LocalQueue.</summary>
[Collection(QarnotCollection.Name)]
public sealed class PovRayRenderTests(QarnotFixture fixture) : IDisposable
{
    private readonly TempDir _dir = new("qarnot-povray");

    public void Dispose() => _dir.Dispose();

    [ComponentFact(Components.S3, Components.PovRay)]
    public async Task TiledRender_OnQarnot_HasTheSamePixelsAsOnLocalQueue_AndAsTheWholeFrame()
    {
        var povray = Components.RequireExecutable("povray", "apt-get install -y povray");
        var scene = await WriteSceneAsync();
        var settings = new RenderSettings { Frames = FrameList.Parse("1-2"), Size = new ImageSize(64, 48), Tiles = new TileGrid(2, 2) };
        await using var qarnot = await fixture.NewPluginAsync();
        var localData = _dir.Combine("localqueue");
        var local = new LocalQueuePlugin();
        await local.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            DataDirectory = localData,
            Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
            {
                ["Agents"] = "2",
                ["IdleSeconds"] = "5",
                ["HeartbeatSeconds"] = "1",
                ["LeaseSeconds"] = "10",
                ["PovRay"] = povray,
                ["FarmTools"] = QarnotFixture.FarmToolsExecutable,
            },
        });
        try
        {
            var onQarnot = await RenderAsync(qarnot, scene, settings, "qarnot");
            var onLocalQueue = await RenderAsync(local, scene, settings, "localqueue-out");
            var whole = await RenderAsync(qarnot, scene, settings with { Tiles = TileGrid.Single }, "whole");

            var tasks = await qarnot.GetTasksAsync(onQarnot.Submission.JobId);
            Assert.Equal(10, tasks.Count);
            Assert.All(tasks, t => Assert.Equal(JobState.Completed, t.State));
            Assert.Equal(2, onQarnot.FetchedFiles.Count);
            var resultBucket = $"farmtests-results-{onQarnot.Submission.Context.Id:N}";
            foreach (var output in onQarnot.Submission.Plan.Outputs)
            {
                var fetched = _dir.Combine("qarnot", output);
                var bytes = await File.ReadAllBytesAsync(fetched);
                await TestJobs.ReadObjectAsync(fixture, resultBucket, output, bytes.Length, TestJobs.Sha256(bytes));
                var frame = await PngImage.LoadAsync(fetched);
                Assert.Equal(0, ImageComparison.CountDifferentPixels(await PngImage.LoadAsync(_dir.Combine("localqueue-out", output)), frame));
                Assert.Equal(0, ImageComparison.CountDifferentPixels(await PngImage.LoadAsync(_dir.Combine("whole", output)), frame));
            }
        }
        finally
        {
            await local.DisposeAsync();
            foreach (var pid in LocalQueuePlugin.AgentProcessIds(localData))
            {
                ProcessTracker.Kill(pid);
            }
        }
    }

    private Task<RenderResult> RenderAsync(BaseFarmPlugin farm, string scene, RenderSettings settings, string output) =>
        PovRayFarmRender.RenderAsync(farm, scene, settings, _dir.Combine(output), maxAttempts: 1,
            diagnostics: () => string.Join("\n", fixture.Emulator.Tasks.Where(t => t.State != "Success").Select(t => t.Transcript())));

    /// <summary>A scene with an include in a sub-folder that includes another, and an image map: the hosts' test scene.</summary>
    private async Task<string> WriteSceneAsync()
    {
        _dir.WriteFile("scene/inc/look.inc", """
            #include "inc/colors2.inc"
            #declare Ball = sphere { <0, 0.6, 0>, 0.6 pigment { color BallColor } finish { phong 0.8 } }
            """);
        _dir.WriteFile("scene/inc/colors2.inc", "#declare BallColor = rgb <1, 0.4, 0.1>;\n");
        await PovRayFarmRender.WriteCheckerAsync(_dir);
        return _dir.WriteFile("scene/scene.pov", """
            #version 3.7;
            global_settings { assumed_gamma 1.0 }
            #include "colors.inc"
            #include "inc/look.inc"
            camera { location <0, 1.2, -3.5> look_at <0, 0.5, 0> }
            light_source { <3, 5, -4> color White }
            object { Ball translate <-0.7 + 1.4 * clock, 0, 0> }
            plane { y, 0 pigment { image_map { png "maps/checker.png" } rotate x*90 scale 0.8 } }
            box { <0.6, 0, 0.4>, <1.2, 0.5, 1.0> pigment { color rgb <0.2, 0.5, 1> } rotate y * 360 * clock }
            """);
    }
}

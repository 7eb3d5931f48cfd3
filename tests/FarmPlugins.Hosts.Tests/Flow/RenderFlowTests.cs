using FarmApi;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Hosts.Tests.Flow;

public class RenderFlowTests
{
    [ComponentFact(Components.PovRay)]
    public async Task RenderAsync_RunsKatanasOrder_AndFetchesEveryFrame()
    {
        using var dir = new TempDir("flow");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var farm = await InlineFarm.CreateAsync(dir.Combine("farm"));
        var flow = new RenderFlow(farm);
        var submitted = new List<string>();
        var states = new List<JobState>();

        var result = await flow.RenderAsync(new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = new RenderSettings { Frames = FrameList.Parse("1-2"), Tiles = new TileGrid(2, 2), Size = new ImageSize(40, 30) },
            OutputFolder = dir.Combine("out"),
            PollInterval = TimeSpan.FromMilliseconds(50),
        }, new RenderCallbacks { Submitted = s => submitted.Add(s.JobId), Update = u => states.Add(u.Job.State) });

        Assert.Equal(JobState.Completed, result.Job.State);
        Assert.Equal(
            ["CreateTemporaryFolder", "CopyRenderFiles", "GetInstallationMetadata:povray", "GetInstallationMetadata:farm-tools", "GetJobEnvironment", "SubmitJob", "FetchOutputs"],
            farm.Calls);
        Assert.Equal([result.Submission.JobId], submitted);
        Assert.Equal(JobState.Completed, states[^1]);
        Assert.Equal(2, result.FetchedFiles.Count);
        Assert.Equal(10, result.Submission.Request.Tasks.Count);
        var frame = await PngImage.LoadAsync(dir.Combine("out", "scene_0002.png"));
        Assert.Equal((40, 30), (frame.Width, frame.Height));
    }

    [ComponentFact(Components.PovRay)]
    public async Task Preview_HandsBackTheImage_AndDeletesTheFarmCopy()
    {
        using var dir = new TempDir("flowpreview");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var farm = await InlineFarm.CreateAsync(dir.Combine("farm"));

        var result = await new RenderFlow(farm).RenderAsync(new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = new RenderSettings { Type = RenderType.Preview, Size = new ImageSize(24, 16) },
            OutputFolder = dir.Combine("preview"),
            PollInterval = TimeSpan.FromMilliseconds(50),
        });

        Assert.NotNull(result.PreviewImage);
        Assert.True(File.Exists(result.PreviewImage));
        Assert.Equal("DeleteJob", farm.Calls[^1]);
        Assert.False(Directory.Exists(result.Submission.TemporaryFolder));
        await Assert.ThrowsAsync<JobNotFoundException>(() => farm.GetJobAsync(result.Submission.JobId));
    }

    [Fact]
    public async Task MissingDependency_IsReportedBeforeTheFarmIsTouched()
    {
        using var dir = new TempDir("flowmissing");
        var scene = dir.WriteFile("s/scene.pov", "#include \"nope.inc\"\n");
        var farm = await InlineFarm.CreateAsync(dir.Combine("farm"));

        var error = await Assert.ThrowsAsync<SceneException>(() =>
            new RenderFlow(farm).SubmitAsync(new RenderJob { Adapter = new PovRayHostAdapter(), ScenePath = scene }));

        Assert.Equal("scene.pov:1: cannot find #include file 'nope.inc' (searched " + dir.Combine("s"), error.Message[..(error.Message.IndexOf(',', StringComparison.Ordinal))]);
        Assert.Empty(farm.Calls);
    }

    [Fact]
    public async Task BadSettings_AreReportedBeforeTheFarmIsTouched()
    {
        using var dir = new TempDir("flowbad");
        var scene = dir.WriteFile("s/scene.pov", "sphere { 0, 1 }\n");
        var farm = await InlineFarm.CreateAsync(dir.Combine("farm"));

        var error = await Assert.ThrowsAsync<ArgumentException>(() => new RenderFlow(farm).SubmitAsync(new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = new RenderSettings { Chunk = 0, Frames = FrameList.Parse("1-3"), Type = RenderType.Preview },
        }));

        Assert.Contains("chunk", error.Message);
        Assert.Contains("frames", error.Message);
        Assert.Empty(farm.Calls);
    }

    [Fact]
    public void Registry_PicksTheAdapterByExtension_AndListsTheKnownOnes()
    {
        var registry = new HostAdapterRegistry([new PovRayHostAdapter(), new FarmPlugins.Hosts.Blender.BlenderHostAdapter()]);
        Assert.Equal("povray", registry.ForScene("/x/Scene.POV").Name);
        Assert.Equal("blender", registry.ForScene("shot.blend").Name);
        var error = Assert.Throws<ArgumentException>(() => registry.ForScene("a.ma"));
        Assert.Contains(".pov", error.Message);
        Assert.Contains(".blend", error.Message);
    }
}

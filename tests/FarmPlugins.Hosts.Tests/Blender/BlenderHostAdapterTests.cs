using FarmApi;
using FarmPlugins.Hosts.Blender;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Hosts.Tests.Blender;

public class BlenderHostAdapterTests
{
    [ComponentFact(Components.Blender)]
    public async Task Frames1To3_Render_WithTheTextureStaged_AndTilesMergeWithin40Db()
    {
        Components.RequireExecutable("blender", "apt-get install -y blender");
        using var dir = new TempDir("blend");
        var scene = await MakeSceneAsync(dir);
        dir.WriteFile("scene/unused.png", "not used");
        var adapter = new BlenderHostAdapter();

        var plan = await adapter.PlanAsync(scene, new RenderSettings { Frames = FrameList.Parse("1-3"), Chunk = 3, Threads = 1 });

        Assert.Equal(new ImageSize(64, 48), plan.Size);
        Assert.Contains(plan.Files, f => f.RelativePath == "textures/grid.png");
        Assert.DoesNotContain(plan.Files, f => f.RelativePath.Contains("unused", StringComparison.Ordinal));
        var setup = await File.ReadAllTextAsync(plan.Files.Single(f => f.RelativePath == BlenderHostAdapter.SetupScriptPath).LocalPath);
        Assert.Contains("//textures/grid.png", setup);
        Assert.Contains(plan.Files, f => f.RelativePath == "_ext/1/stripes.png");
        Assert.Contains("//_ext/1/stripes.png", setup);
        var tasks = plan.CreateTasks(LocalTaskRunner.Installations());
        Assert.Single(tasks);
        Assert.Contains("--python-exit-code", tasks[0].Commands[0].Arguments);

        var job = dir.Combine("job");
        Directory.CreateDirectory(job);
        await LocalTaskRunner.RunAsync(plan, job);
        var frames = new List<PngImage>();
        foreach (var output in plan.Outputs)
        {
            frames.Add(await PngImage.LoadAsync(Path.Combine(job, output)));
        }

        Assert.Equal(new[] { "scene_0001.png", "scene_0002.png", "scene_0003.png" }, plan.Outputs);
        Assert.True(ImageComparison.CountDifferentPixels(frames[0], frames[2]) > 0, "the ball did not move");
        Assert.Equal(0, MissingTexturePixels(frames[1]));

        var tiledPlan = await adapter.PlanAsync(scene, new RenderSettings { Frames = FrameList.Parse("2"), Tiles = new TileGrid(2, 2), Threads = 1 });
        var tiledJob = dir.Combine("tiled");
        Directory.CreateDirectory(tiledJob);
        await LocalTaskRunner.RunAsync(tiledPlan, tiledJob);
        var tiled = await PngImage.LoadAsync(Path.Combine(tiledJob, "scene_0002.png"));

        var psnr = ImageComparison.Psnr(frames[1], tiled);
        Assert.True(psnr >= 40, $"tiled vs whole PSNR {psnr:0.0} dB");
    }

    [ComponentFact(Components.Blender)]
    public async Task UnevenTiles_HaveTheExactPixelSizes_TheMergerExpects()
    {
        using var dir = new TempDir("blenduneven");
        var scene = await MakeSceneAsync(dir);
        var plan = await new BlenderHostAdapter().PlanAsync(scene, new RenderSettings { Size = new ImageSize(50, 31), Tiles = new TileGrid(3, 2), Threads = 1 });
        var job = dir.Combine("job");
        Directory.CreateDirectory(job);

        // The merge task fails naming the tile when Blender's border rounding gives another size.
        await LocalTaskRunner.RunAsync(plan, job);

        var frame = await PngImage.LoadAsync(Path.Combine(job, plan.Outputs[0]));
        Assert.Equal((50, 31), (frame.Width, frame.Height));
    }

    [ComponentFact(Components.Blender)]
    public async Task MissingTexture_IsReportedBeforeSubmission_NamingIt()
    {
        using var dir = new TempDir("blendmissing");
        var scene = await MakeSceneAsync(dir);
        File.Delete(dir.Combine("scene", "textures", "grid.png"));

        var error = await Assert.ThrowsAsync<SceneException>(() => new BlenderHostAdapter().PlanAsync(scene, new RenderSettings()));

        Assert.Contains("grid.png", error.Message);
        Assert.Equal("scene.blend", error.File);
    }

    [Fact]
    public async Task NegativeFrames_AreRefused()
    {
        using var dir = new TempDir("blendneg");
        var scene = dir.WriteFile("s.blend", "x");
        var error = await Assert.ThrowsAsync<ArgumentException>(() => new BlenderHostAdapter().PlanAsync(scene, new RenderSettings { Frames = FrameList.Parse("-2-2") }));
        Assert.Contains("frames", error.Message);
    }

    /// <summary>Blender paints a texture it cannot find magenta (and still exits 0).</summary>
    private static int MissingTexturePixels(PngImage image)
    {
        var rgb = image.ConvertTo(3, 8);
        var count = 0;
        for (var y = 0; y < rgb.Height; y++)
        {
            for (var x = 0; x < rgb.Width; x++)
            {
                if (rgb.Get(x, y, 0) > 200 && rgb.Get(x, y, 1) < 60 && rgb.Get(x, y, 2) > 200)
                {
                    count++;
                }
            }
        }

        return count;
    }

    internal static async Task<string> MakeSceneAsync(TempDir dir)
    {
        var texture = new PngImage(16, 16);
        for (var y = 0; y < 16; y++)
        {
            for (var x = 0; x < 16; x++)
            {
                var on = ((x / 4) + (y / 4)) % 2 == 0;
                texture.Set(x, y, 0, on ? 240 : 30);
                texture.Set(x, y, 1, on ? 200 : 60);
                texture.Set(x, y, 2, on ? 40 : 160);
            }
        }

        var texturePath = dir.Combine("scene", "textures", "grid.png");
        await texture.SaveAsync(texturePath);
        var sharedPath = dir.Combine("shared", "stripes.png");
        var stripes = new PngImage(8, 8);
        for (var y = 0; y < 8; y++)
        {
            for (var x = 0; x < 8; x++)
            {
                stripes.Set(x, y, x % 2 == 0 ? 0 : 2, 220);
            }
        }

        await stripes.SaveAsync(sharedPath);
        var scene = dir.Combine("scene", "scene.blend");
        var script = Path.Combine(AppContext.BaseDirectory, "Blender", "make_scene.py");
        var (exit, output) = await LocalTaskRunner.RunProcessAsync("blender",
            ["-b", "--factory-startup", "--python-exit-code", "1", "--python", script, "--", scene, texturePath, sharedPath], dir.Path);
        Assert.True(exit == 0 && File.Exists(scene), output);
        return scene;
    }
}

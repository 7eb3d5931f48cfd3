using FarmApi;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Hosts.Tests.PovRay;

public class PovRayHostAdapterTests
{
    private static readonly ImageSize Small = new(96, 64);

    [ComponentFact(Components.PovRay)]
    public async Task TiledRender_MergesToTheWholeFrame_PixelForPixel()
    {
        using var dir = new TempDir("povtiles");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var adapter = new PovRayHostAdapter();

        var whole = await RenderAsync(adapter, scene, new RenderSettings { Size = Small }, dir.Combine("whole"));
        var tiled = await RenderAsync(adapter, scene, new RenderSettings { Size = Small, Tiles = TileGrid.Parse("2x2") }, dir.Combine("tiled"));

        Assert.Equal(96, whole[0].Width);
        Assert.Equal(0, ImageComparison.CountDifferentPixels(whole[0], tiled[0]));
    }

    [ComponentFact(Components.PovRay)]
    public async Task Antialias_ReachesPovRay_AndTilesStayWithin40Db()
    {
        using var dir = new TempDir("povaa");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var adapter = new PovRayHostAdapter();

        var plain = await RenderAsync(adapter, scene, new RenderSettings { Size = Small }, dir.Combine("plain"));
        var smooth = await RenderAsync(adapter, scene, new RenderSettings { Size = Small, Antialias = true }, dir.Combine("aa"));
        var smoothTiled = await RenderAsync(adapter, scene, new RenderSettings { Size = Small, Antialias = true, Tiles = new TileGrid(2, 2) }, dir.Combine("aatiled"));

        Assert.True(ImageComparison.CountDifferentPixels(plain[0], smooth[0]) > 0, "antialiasing changed nothing");
        Assert.True(ImageComparison.Psnr(smooth[0], smoothTiled[0]) >= 40, $"PSNR {ImageComparison.Psnr(smooth[0], smoothTiled[0]):0.0} dB");
    }

    [ComponentFact(Components.PovRay)]
    public async Task StagedCopy_RendersAlone_WithTheSamePixels_AndUnusedFilesAreNotStaged()
    {
        using var dir = new TempDir("povstage");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var plan = await new PovRayHostAdapter().PlanAsync(scene, new RenderSettings { Size = Small });

        Assert.Equal(
            new[] { "scene.pov", "inc/look.inc", "inc/colors2.inc", "maps/checker.png" }.Order(),
            plan.Files.Select(f => f.RelativePath).Order());
        Assert.Equal("scene.pov", plan.Files[0].RelativePath);

        // The job folder holds only what was staged; it must render there alone.
        var job = dir.Combine("job");
        Directory.CreateDirectory(job);
        await LocalTaskRunner.RunAsync(plan, job);
        var staged = await PngImage.LoadAsync(Path.Combine(job, plan.Outputs[0]));

        // The original scene rendered in place, as an artist would.
        var (exit, output) = await LocalTaskRunner.RunProcessAsync("povray",
            ["+Iscene.pov", "+Oinplace.png", "+FN", "+W96", "+H64", "-D", "-P", "-A"], Path.GetDirectoryName(scene)!);
        Assert.True(exit == 0, output);
        var inPlace = await PngImage.LoadAsync(dir.Combine("scene", "inplace.png"));

        Assert.Equal(0, ImageComparison.CountDifferentPixels(inPlace, staged));
    }

    [ComponentFact(Components.PovRay)]
    public async Task Animation_WithChunk2_MakesThreeTasks_AndSixDifferentFrames()
    {
        using var dir = new TempDir("povanim");
        var scene = await TestScenes.WritePovRaySceneAsync(dir);
        var settings = new RenderSettings { Size = new ImageSize(48, 32), Frames = FrameList.Parse("1-6"), Chunk = 2 };
        var plan = await new PovRayHostAdapter().PlanAsync(scene, settings);
        var tasks = plan.CreateTasks(LocalTaskRunner.Installations());

        Assert.Equal(new[] { "f0001_0002", "f0003_0004", "f0005_0006" }, tasks.Select(t => t.Id));
        Assert.All(tasks, t => Assert.Equal("povray", t.Host));
        Assert.Equal("1,2", tasks[0].Labels!["frame"]);
        Assert.Equal(new[] { "scene_0001.png", "scene_0002.png" }, tasks[0].Outputs);

        var job = dir.Combine("job");
        Directory.CreateDirectory(job);
        await LocalTaskRunner.RunAsync(plan, job);
        var frames = new List<PngImage>();
        foreach (var output in plan.Outputs)
        {
            frames.Add(await PngImage.LoadAsync(Path.Combine(job, output)));
        }

        Assert.Equal(6, frames.Count);
        for (var i = 0; i < frames.Count; i++)
        {
            for (var j = i + 1; j < frames.Count; j++)
            {
                Assert.True(ImageComparison.CountDifferentPixels(frames[i], frames[j]) > 0, $"frames {i + 1} and {j + 1} are identical");
            }
        }
    }

    [Fact]
    public async Task Tiles_MakeOneTaskPerTile_AndAMergePerFrame()
    {
        using var dir = new TempDir("povlayout");
        var scene = dir.WriteFile("s/a.pov", "sphere { 0, 1 pigment { rgb 1 } }\n");
        var plan = await new PovRayHostAdapter().PlanAsync(scene, new RenderSettings { Frames = FrameList.Parse("3-4"), Tiles = new TileGrid(2, 1), Size = new ImageSize(10, 4) });
        var tasks = plan.CreateTasks(new Dictionary<string, InstallationMetadata>
        {
            ["povray"] = new("povray", "3.7", "/opt/pov/povray"),
            [FarmTools.HostName] = new(FarmTools.HostName, "2", "/opt/tools/farm-tools"),
        });

        Assert.Equal(new[] { "f0003-t0x0", "f0003-t1x0", "f0004-t0x0", "f0004-t1x0", "merge-f0003", "merge-f0004" }, tasks.Select(t => t.Id));
        var tile = tasks[1];
        Assert.Equal("/opt/pov/povray", tile.Commands[0].Executable);
        Assert.Contains("+SC6", tile.Commands[0].Arguments);
        Assert.Contains("+EC10", tile.Commands[0].Arguments);
        Assert.Contains("+SR1", tile.Commands[0].Arguments);
        Assert.Contains("+ER4", tile.Commands[0].Arguments);
        Assert.Equal("1x0", tile.Labels!["tile"]);
        Assert.Equal("3", tile.Labels["frame"]);
        var merge = tasks[4];
        Assert.Equal(FarmTools.HostName, merge.Host);
        Assert.Equal("/opt/tools/farm-tools", merge.Commands[0].Executable);
        Assert.Equal(new[] { "f0003-t0x0", "f0003-t1x0" }, merge.DependsOn);
        Assert.Equal(new[] { "a_0003.png" }, merge.Outputs);
        Assert.Equal(new[] { "a_0003.png", "a_0004.png" }, plan.Outputs);
        Assert.All(tasks.SelectMany(t => t.Commands).SelectMany(c => c.Arguments), a => Assert.DoesNotContain(dir.Path, a));
    }

    [Fact]
    public async Task MissingInclude_IsReported_WithTheFileAndLine()
    {
        using var dir = new TempDir("povmissing");
        dir.WriteFile("s/inc/a.inc", "// first line\n#include \"gone.inc\"\n");
        var scene = dir.WriteFile("s/scene.pov", "#include \"inc/a.inc\"\nsphere { 0, 1 }\n");

        var error = await Assert.ThrowsAsync<SceneException>(() => new PovRayHostAdapter().PlanAsync(scene, new RenderSettings()));

        Assert.Equal(2, error.Line);
        Assert.Equal("inc/a.inc", error.File);
        Assert.Contains("inc/a.inc:2", error.Message);
        Assert.Contains("gone.inc", error.Message);
    }

    [Fact]
    public async Task MissingImage_IsReported_WithTheFileAndLine()
    {
        using var dir = new TempDir("povmissingimg");
        var scene = dir.WriteFile("s/scene.pov", "plane { y, 0\n  pigment { image_map { png \"maps/none.png\" } } }\n");

        var error = await Assert.ThrowsAsync<SceneException>(() => new PovRayHostAdapter().PlanAsync(scene, new RenderSettings()));

        Assert.Equal("scene.pov", error.File);
        Assert.Equal(2, error.Line);
        Assert.Contains("maps/none.png", error.Message);
    }

    [ComponentFact(Components.PovRay)]
    public async Task IncludeClimbingOut_IsStagedInsideTheJobFolder_AndRenders()
    {
        using var dir = new TempDir("povclimb");
        dir.WriteFile("shared/palette.inc", "#declare Tint = rgb <0.2, 0.8, 0.3>;\n");
        var absolute = dir.WriteFile("elsewhere/abs.inc", "#declare Size = 0.9;\n");
        var scene = dir.WriteFile("s/scene.pov", $$"""
            #include "../shared/palette.inc"
            #include "{{absolute}}"
            camera { location <0, 0, -3> look_at 0 }
            light_source { <2, 4, -3> rgb 1 }
            sphere { 0, Size pigment { color Tint } }
            """);

        var plan = await new PovRayHostAdapter().PlanAsync(scene, new RenderSettings { Size = new ImageSize(32, 24) });

        Assert.All(plan.Files, f => Assert.True(JobPaths.IsSafe(f.RelativePath), f.RelativePath));
        Assert.Contains(plan.Files, f => f.RelativePath.EndsWith("palette.inc", StringComparison.Ordinal) && f.RelativePath.StartsWith("_ext/", StringComparison.Ordinal));
        Assert.Contains(plan.Files, f => f.RelativePath.EndsWith("abs.inc", StringComparison.Ordinal));
        var stagedScene = await File.ReadAllTextAsync(plan.Files[0].LocalPath);
        Assert.DoesNotContain("../shared", stagedScene);
        Assert.DoesNotContain(absolute, stagedScene);
        Assert.Contains("../shared", await File.ReadAllTextAsync(scene));

        var job = dir.Combine("job");
        Directory.CreateDirectory(job);
        await LocalTaskRunner.RunAsync(plan, job);
        var image = await PngImage.LoadAsync(Path.Combine(job, plan.Outputs[0]));
        Assert.True(image.Get(16, 12, 1) > image.Get(16, 12, 0), "the sphere is not the included green");
    }

    [ComponentFact(Components.PovRay)]
    public async Task LibraryPathAndFonts_AreStaged_AndTheCopyRendersLikeTheOriginal()
    {
        using var dir = new TempDir("povlib");
        dir.WriteFile("mylib/shapes.inc", "#declare Thing = box { -0.5, 0.5 pigment { rgb <0.9, 0.3, 0.6> } rotate <20, 30, 0> }\n");
        dir.WriteFile("scene/povray.ini", "Library_Path=../mylib\n");
        Directory.CreateDirectory(dir.Combine("scene", "fonts"));
        File.Copy(Path.Combine(PovRayOptions.DefaultSystemIncludeDirectory, "cyrvetic.ttf"), dir.Combine("scene", "fonts", "myfont.ttf"));
        var scene = dir.WriteFile("scene/scene.pov", """
            #include "shapes.inc"
            camera { location <0, 0.5, -4> look_at <0, 0.3, 0> }
            light_source { <2, 4, -3> rgb 1 }
            object { Thing translate <-1, 0.2, 0> }
            text { ttf "fonts/myfont.ttf" "Farm" 0.2, 0 pigment { rgb <0.2, 0.8, 1> } scale 0.6 translate <0, -0.6, 0> }
            """);

        var plan = await new PovRayHostAdapter().PlanAsync(scene, new RenderSettings { Size = new ImageSize(64, 48) });

        Assert.Equal(new[] { "fonts/myfont.ttf", "scene.pov", "shapes.inc" }, plan.Files.Select(f => f.RelativePath).Order());
        var job = dir.Combine("job");
        Directory.CreateDirectory(job);
        await LocalTaskRunner.RunAsync(plan, job);
        var (exit, output) = await LocalTaskRunner.RunProcessAsync("povray",
            ["+Iscene.pov", "+Oinplace.png", "+FN", "+W64", "+H48", "-D", "-P", "-A"], dir.Combine("scene"));
        Assert.True(exit == 0, output);

        Assert.Equal(0, ImageComparison.CountDifferentPixels(
            await PngImage.LoadAsync(dir.Combine("scene", "inplace.png")),
            await PngImage.LoadAsync(Path.Combine(job, plan.Outputs[0]))));
    }

    [Fact]
    public void HostileSettings_AreRefused_WithTheSettingNamed()
    {
        Assert.Contains("tiles", Assert.Throws<ArgumentException>(() => TileGrid.Parse("0x2")).Message);
        Assert.Contains("size", Assert.Throws<ArgumentException>(() => ImageSize.Parse("big")).Message);
        Assert.Contains("'x'", Assert.Throws<FrameListFormatException>(() => FrameList.Parse("1-x")).Message);
        Assert.Contains("chunk", Assert.Throws<ArgumentException>(() => new RenderSettings { Chunk = 0 }.Validate()).Message);
        Assert.Contains("output", Assert.Throws<ArgumentException>(() => new RenderSettings { OutputPattern = "../x_####.png" }.Validate()).Message);
        Assert.Contains("output", Assert.Throws<ArgumentException>(() => new RenderSettings { OutputPattern = "frame.png" }.Validate()).Message);
    }

    [Fact]
    public void SystemIncludesAndComments_AreNotDependencies()
    {
        var references = PovRayDependencyScanner.FindReferences("""
            #include "colors.inc" // #include "x.inc"
            /* outer /* nested */ #include "y.inc" */
            text { ttf "timrom.ttf" "Hi" 0.1, 0 }
            height_field { png "hf.png" }
            # include "spaced.inc"
            """).ToList();

        Assert.Equal(new[] { "colors.inc", "timrom.ttf", "hf.png", "spaced.inc" }, references.Select(r => r.Value));
        Assert.Equal(new[] { 1, 3, 4, 5 }, references.Select(r => r.Line));
    }

    private static async Task<IReadOnlyList<PngImage>> RenderAsync(PovRayHostAdapter adapter, string scene, RenderSettings settings, string job)
    {
        Directory.CreateDirectory(job);
        var plan = await adapter.PlanAsync(scene, settings);
        await LocalTaskRunner.RunAsync(plan, job);
        var images = new List<PngImage>();
        foreach (var output in plan.Outputs)
        {
            images.Add(await PngImage.LoadAsync(Path.Combine(job, output)));
        }

        return images;
    }
}

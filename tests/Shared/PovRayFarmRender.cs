using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;
using Xunit;

namespace FarmPlugins.TestSupport;

/// <summary>
/// The POV-Ray render the farm adapters' end-to-end tests submit unchanged through their farm and through LocalQueue
/// (compiled into those test projects; the shared TestSupport project does not reference the hosts).
/// </summary>
internal static class PovRayFarmRender
{
    /// <summary>Renders <paramref name="scene"/> on <paramref name="farm"/> through the hosts' RenderFlow into <paramref name="outputFolder"/>; the job must complete.</summary>
    public static async Task<RenderResult> RenderAsync(BaseFarmPlugin farm, string scene, RenderSettings settings, string outputFolder,
        int? maxAttempts = null, Func<string>? diagnostics = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var job = new RenderJob
        {
            Adapter = new PovRayHostAdapter(),
            ScenePath = scene,
            Settings = settings,
            OutputFolder = outputFolder,
            PollInterval = TimeSpan.FromMilliseconds(100),
        };
        if (maxAttempts is { } attempts)
        {
            job = job with { MaxAttempts = attempts };
        }

        var result = await new RenderFlow(farm).RenderAsync(job, cancellationToken: timeout.Token);
        Assert.True(result.Job.State == JobState.Completed,
            $"job {result.Job.Id} on {farm.Name} ended {result.Job.State}{(diagnostics is null ? string.Empty : "\n" + diagnostics())}");
        return result;
    }

    /// <summary>Writes a scene with an include in a sub-folder and an image map (files the host collects and the farm stages) under <paramref name="dir"/>.</summary>
    public static async Task<string> WriteSceneAsync(TempDir dir)
    {
        dir.WriteFile("scene/inc/look.inc", "#declare Ball = sphere { <0, 0.6, 0>, 0.6 pigment { rgb <1, 0.4, 0.1> } finish { phong 0.8 } }\n");
        await WriteCheckerAsync(dir);
        return dir.WriteFile("scene/scene.pov", """
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

    /// <summary>Writes the 8×8 checker image the scenes map onto their floor, at <c>scene/maps/checker.png</c> under <paramref name="dir"/>.</summary>
    public static async Task WriteCheckerAsync(TempDir dir)
    {
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

        await texture.SaveAsync(dir.Combine("scene", "maps", "checker.png"));
    }
}

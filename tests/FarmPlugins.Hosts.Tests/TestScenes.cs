using FarmPlugins.Hosts.Imaging;
using FarmPlugins.TestSupport;

namespace FarmPlugins.Hosts.Tests;

/// <summary>Small scenes written by tests.</summary>
public static class TestScenes
{
    /// <summary>A POV-Ray scene with an include in a sub-folder that includes another, an image map, and an unused file.</summary>
    public static async Task<string> WritePovRaySceneAsync(TempDir dir, string folder = "scene")
    {
        dir.WriteFile($"{folder}/inc/look.inc", """
            // Relative names resolve from the working folder, as POV-Ray does.
            #include "inc/colors2.inc"
            #declare Ball = sphere { <0, 0.6, 0>, 0.6 pigment { color BallColor } finish { phong 0.8 } }
            """);
        dir.WriteFile($"{folder}/inc/colors2.inc", "#declare BallColor = rgb <1, 0.4, 0.1>;\n");
        dir.WriteFile($"{folder}/unused.inc", "#declare Unused = 1;\n");
        dir.WriteFile($"{folder}/notes.txt", "not a dependency\n");
        var texture = new PngImage(8, 8);
        for (var y = 0; y < 8; y++)
        {
            for (var x = 0; x < 8; x++)
            {
                texture.Set(x, y, 0, (x + y) % 2 == 0 ? 230 : 20);
                texture.Set(x, y, 1, 40 * x / 2);
                texture.Set(x, y, 2, 200);
            }
        }

        await texture.SaveAsync(dir.Combine(folder, "maps", "checker.png"));
        return dir.WriteFile($"{folder}/scene.pov", """
            #version 3.7;
            global_settings { assumed_gamma 1.0 }
            #include "colors.inc" // a system include: exists on nodes, never staged
            #include "inc/look.inc"
            /* a commented reference is not a dependency: #include "nothere.inc" */
            camera { location <0, 1.2, -3.5> look_at <0, 0.5, 0> }
            light_source { <3, 5, -4> color White }
            object { Ball translate <-0.7 + 1.4 * clock, 0, 0> }
            plane { y, 0 pigment { image_map { png "maps/checker.png" } rotate x*90 scale 0.8 } }
            box { <0.6, 0, 0.4>, <1.2, 0.5, 1.0> pigment { color rgb <0.2, 0.5, 1> } rotate y * 360 * clock }
            """);
    }
}

using System.Text.Json;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Cli.Tests;

/// <summary>The README's main job, end to end at a small size: real POV-Ray tiles, merged, fetched, a contact sheet.</summary>
[Collection(CliCollection.Name)]
public sealed class DemoTests(CliFixture farm)
{
    [ComponentFact(Components.PovRay)]
    public async Task Demo_RendersTiledFrames_WritesAContactSheet_AndASecondRunReusesThem()
    {
        using var output = new TempDir("demo");

        var first = await farm.RunAsync("demo", "--frames", "1-2", "--size", "64x36", "--out", output.Path, "--json");

        Assert.True(first.Code == 0, first.ToString());
        var result = JsonDocument.Parse(first.Stdout).RootElement;
        Assert.False(result.GetProperty("reused").GetBoolean());
        var frames = result.GetProperty("frames").EnumerateArray().Select(f => f.GetString()!).ToList();
        Assert.Equal(2, frames.Count);
        foreach (var frame in frames)
        {
            var bytes = await File.ReadAllBytesAsync(frame);
            Assert.Equal(0x89, bytes[0]);
            Assert.Equal((byte)'P', bytes[1]);
        }

        Assert.NotEqual(await File.ReadAllBytesAsync(frames[0]), await File.ReadAllBytesAsync(frames[1]));
        Assert.True(File.Exists(result.GetProperty("contactSheet").GetString()));

        var second = await farm.RunAsync("demo", "--frames", "1-2", "--size", "64x36", "--out", output.Path, "--json");
        Assert.True(second.Code == 0, second.ToString());
        Assert.True(JsonDocument.Parse(second.Stdout).RootElement.GetProperty("reused").GetBoolean());
    }
}

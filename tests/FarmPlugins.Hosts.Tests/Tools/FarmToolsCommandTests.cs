using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.Tests.Imaging;
using FarmPlugins.TestSupport;
using FarmPlugins.Tools;
using Xunit;

namespace FarmPlugins.Hosts.Tests.Tools;

public class FarmToolsCommandTests
{
    [Fact]
    public async Task Merge_AssemblesTileSizedTiles()
    {
        using var dir = new TempDir("merge");
        var whole = PngImageTests.Pattern(10, 6, 3, 8);
        await whole.Crop(0, 0, 5, 6).SaveAsync(dir.Combine("a.png"));
        await whole.Crop(5, 0, 5, 6).SaveAsync(dir.Combine("b.png"));

        var (exit, _, error) = await RunAsync(dir, "merge", "--out", "out/frame.png", "--size", "10x6", "--tile", "a.png@0,0,5,6", "--tile", "b.png@5,0,5,6");

        Assert.True(exit == 0, error);
        Assert.Equal(whole.Data, (await PngImage.LoadAsync(dir.Combine("out", "frame.png"))).Data);
    }

    [Fact]
    public async Task Merge_CropsFullSizeTiles()
    {
        using var dir = new TempDir("mergefull");
        var whole = PngImageTests.Pattern(10, 6, 4, 16);
        await whole.SaveAsync(dir.Combine("t0.png"));
        await whole.SaveAsync(dir.Combine("t1.png"));

        var (exit, _, error) = await RunAsync(dir, "merge", "--out", "f.png", "--size", "10x6", "--full-size-tiles", "--tile", "t0.png@0,0,10,3", "--tile", "t1.png@0,3,10,3");

        Assert.True(exit == 0, error);
        Assert.Equal(whole.Data, (await PngImage.LoadAsync(dir.Combine("f.png"))).Data);
    }

    [Fact]
    public async Task Merge_FailsNamingAMissingTile()
    {
        using var dir = new TempDir("mergemissing");
        await PngImageTests.Pattern(5, 6, 3, 8).SaveAsync(dir.Combine("a.png"));

        var (exit, _, error) = await RunAsync(dir, "merge", "--out", "f.png", "--size", "10x6", "--tile", "a.png@0,0,5,6", "--tile", "gone.png@5,0,5,6");

        Assert.Equal(1, exit);
        Assert.Contains("gone.png", error);
        Assert.False(File.Exists(dir.Combine("f.png")));
    }

    [Fact]
    public async Task Merge_FailsNamingAWrongSizedTile()
    {
        using var dir = new TempDir("mergesize");
        await PngImageTests.Pattern(5, 6, 3, 8).SaveAsync(dir.Combine("a.png"));
        await PngImageTests.Pattern(4, 6, 3, 8).SaveAsync(dir.Combine("b.png"));

        var (exit, _, error) = await RunAsync(dir, "merge", "--out", "f.png", "--size", "10x6", "--tile", "a.png@0,0,5,6", "--tile", "b.png@5,0,5,6");

        Assert.Equal(1, exit);
        Assert.Contains("b.png is 4x6, expected 5x6", error);
    }

    [Fact]
    public async Task Merge_RefusesBadUsage()
    {
        using var dir = new TempDir("mergeusage");
        Assert.Equal(2, (await RunAsync(dir, "merge", "--out", "f.png")).Exit);
        Assert.Equal(2, (await RunAsync(dir, "merge", "--out", "f.png", "--size", "10x6", "--tile", "a.png")).Exit);
        Assert.Equal(2, (await RunAsync(dir, "merge", "--out", "f.png", "--size", "10x6", "--tile", "a.png@8,0,5,6")).Exit);
        Assert.Equal(2, (await RunAsync(dir, "frobnicate")).Exit);
    }

    [Fact]
    public async Task Move_TakesTheOneMatch_AndFailsOtherwise()
    {
        using var dir = new TempDir("move");
        dir.WriteFile(".farm-frame-f0012-12.png", "x");

        Assert.Equal(0, (await RunAsync(dir, "move", ".farm-frame-f0012-*.png", "frames/demo_0012.png")).Exit);
        Assert.True(File.Exists(dir.Combine("frames", "demo_0012.png")));

        var (exit, _, error) = await RunAsync(dir, "move", ".farm-frame-f0013-*.png", "x.png");
        Assert.Equal(1, exit);
        Assert.Contains("no file matches", error);
    }

    [Fact]
    public async Task RealExecutable_ExitsNonZero_OnAMissingTile()
    {
        using var dir = new TempDir("toolsexe");
        var (exit, output) = await LocalTaskRunner.RunProcessAsync(LocalTaskRunner.FarmToolsExecutable,
            ["merge", "--out", "f.png", "--size", "4x4", "--tile", "t.png@0,0,4,4"], dir.Path);
        Assert.Equal(1, exit);
        Assert.Contains("tile t.png is missing", output);
    }

    private static async Task<(int Exit, string Output, string Error)> RunAsync(TempDir dir, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var exit = await FarmToolsCommand.RunAsync(args, output, error, dir.Path);
        return (exit, output.ToString(), error.ToString());
    }
}

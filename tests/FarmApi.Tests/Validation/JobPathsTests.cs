using FarmPlugins.TestSupport;
using Xunit;

namespace FarmApi.Tests.Validation;

/// <summary><see cref="JobPaths.ResolveAllInside"/>: the batch form of ResolveInside refuses what it refuses, naming the index.</summary>
public sealed class JobPathsTests : IDisposable
{
    private readonly TempDir _dir = new("jobpaths");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void ResolveAllInside_GivesTheSamePaths_AsOneByOne()
    {
        var job = Directory.CreateDirectory(_dir.Combine("job")).FullName;
        Directory.CreateDirectory(Path.Combine(job, "maps"));
        string[] paths = ["scene.pov", "maps/a.png", "maps/b.png", "./inc/x.inc", "deep/er/c.png"];

        var all = JobPaths.ResolveAllInside(job, paths, "files", "RelativePath");

        Assert.Equal(paths.Select(p => JobPaths.ResolveInside(job, p)), all);
    }

    [Theory]
    [InlineData("../out.txt", "files[2].RelativePath: '../out.txt' has a '..' segment")]
    [InlineData("/etc/passwd", "files[2].RelativePath:")]
    [InlineData("", "files[2].RelativePath:")]
    public void ResolveAllInside_RefusesABadPath_NamingItsIndex(string bad, string message)
    {
        var job = Directory.CreateDirectory(_dir.Combine("job")).FullName;

        var error = Assert.Throws<ArgumentException>(() => JobPaths.ResolveAllInside(job, ["a.txt", "b/c.txt", bad], "files", "RelativePath"));

        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Equal("files", error.ParamName);
    }

    [Fact]
    public void ResolveAllInside_RefusesLinksThatLeadOut_InAFolderOrAsTheFile_AndAllowsLinksThatStayIn()
    {
        var job = Directory.CreateDirectory(_dir.Combine("job")).FullName;
        var outside = Directory.CreateDirectory(_dir.Combine("outside")).FullName;
        Directory.CreateDirectory(Path.Combine(job, "real"));
        File.CreateSymbolicLink(Path.Combine(job, "out"), outside);
        File.CreateSymbolicLink(Path.Combine(job, "in"), Path.Combine(job, "real"));
        File.CreateSymbolicLink(Path.Combine(job, "real", "leak.txt"), Path.Combine(outside, "leak.txt"));

        // The folder link is met after the same folder was checked through other files: still refused at its index.
        var folder = Assert.Throws<ArgumentException>(() => JobPaths.ResolveAllInside(job, ["real/a.txt", "real/b.txt", "out/c.txt"], "files"));
        Assert.StartsWith("files[2]: 'out/c.txt' passes through a link", folder.Message, StringComparison.Ordinal);
        var file = Assert.Throws<ArgumentException>(() => JobPaths.ResolveAllInside(job, ["real/a.txt", "real/leak.txt"], "files"));
        Assert.StartsWith("files[1]:", file.Message, StringComparison.Ordinal);

        Assert.Equal(Path.Combine(job, "in", "x.txt"), Assert.Single(JobPaths.ResolveAllInside(job, ["in/x.txt"])));
    }
}

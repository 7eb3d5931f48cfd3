using FarmApi.Processes;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmApi.Tests.Processes;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ExecutableLookupTests : IDisposable
{
    private readonly TempDir _dir = new("lookup");

    public void Dispose() => _dir.Dispose();

    private string Executable(string relative, bool executable = true)
    {
        var path = _dir.WriteFile(relative, "#!/bin/sh\nexit 0\n");
        File.SetUnixFileMode(path, executable ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute : UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    [Fact]
    public void FindOnPath_TakesTheFirstFolderWithAnExecutableFile_AsAShellDoes()
    {
        Executable("a/tool", executable: false);
        var wanted = Executable("b/tool");
        Executable("c/tool");

        var found = ExecutableLookup.FindOnPath("tool", $"{_dir.Combine("missing")}:{_dir.Combine("a")}:{_dir.Combine("b")}:{_dir.Combine("c")}");

        Assert.Equal(wanted, found);
        Assert.Null(ExecutableLookup.FindOnPath("no-such-tool", _dir.Combine("b")));
    }

    [Fact]
    public void Find_RemembersABareName_UntilItIsGone_ThenLooksAgain()
    {
        var first = Executable("a/tool");
        var second = Executable("b/tool");
        var path = $"{_dir.Combine("a")}:{_dir.Combine("b")}";
        var lookup = new ExecutableLookup();

        Assert.Equal(first, lookup.Find("tool", _dir.Path, path));
        File.Delete(first);
        Assert.Equal(second, lookup.Find("tool", _dir.Path, path));
        File.Delete(second);
        Assert.Null(lookup.Find("tool", _dir.Path, path));
    }

    [Fact]
    public void Find_KeepsOnePlacePerPath()
    {
        var inA = Executable("a/tool");
        var inB = Executable("b/tool");
        var lookup = new ExecutableLookup();

        Assert.Equal(inA, lookup.Find("tool", _dir.Path, _dir.Combine("a")));
        Assert.Equal(inB, lookup.Find("tool", _dir.Path, _dir.Combine("b")));
        Assert.Equal(inA, lookup.Find("tool", _dir.Path, _dir.Combine("a")));
    }

    [Fact]
    public void Find_APathWithASlash_IsTakenInTheJobFolder_AndNeverLeavesIt()
    {
        var job = _dir.Combine("job");
        var script = Executable("job/bin/render.sh");
        Executable("outside.sh");
        var lookup = new ExecutableLookup();

        Assert.Equal(script, lookup.Find("bin/render.sh", job, "/usr/bin"));
        Assert.Equal(script, lookup.Find("./bin/render.sh", job, "/usr/bin"));
        Assert.Equal(script, lookup.Find(script, "/", "/usr/bin"));
        Assert.Null(lookup.Find("bin/missing.sh", job, "/usr/bin"));
        Assert.Throws<ArgumentException>(() => lookup.Find("../outside.sh", job, "/usr/bin"));
    }
}

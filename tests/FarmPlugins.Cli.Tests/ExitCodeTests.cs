using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Cli.Tests;

/// <summary>Each exit code from a real case; errors are one line saying what to do, a stack trace only with --verbose.</summary>
[Collection(CliCollection.Name)]
public sealed class ExitCodeTests(CliFixture farm)
{
    [Fact]
    public async Task FailedJob_Exits1()
    {
        var result = await farm.RunAsync("submit", "--wait", "--", "/bin/sh", "-c", "exit 4");

        Assert.True(result.Code == 1, result.ToString());
    }

    [Theory]
    [InlineData("jobs", "--no-such-option")]
    [InlineData("status")]
    [InlineData("submit")]
    [InlineData("submit", "--request", "/nonexistent/request.json")]
    [InlineData("render", "/nonexistent/scene.pov")]
    [InlineData("render", "scene.txt")]
    [InlineData("jobs", "--set", "novalue")]
    [InlineData("jobs", "--state", "Sleeping")]
    public async Task UsageErrors_Exit2_WithOneLine(params string[] args)
    {
        var result = await farm.RunAsync(args);

        Assert.True(result.Code == 2, result.ToString());
        Assert.Empty(result.Stdout);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task BadFrameList_Exits2_NamingTheToken()
    {
        using var scene = new TempDir("badframes");
        var path = scene.WriteFile("scene.pov", "camera { location <0,0,-3> look_at 0 } sphere { 0, 1 pigment { rgb 1 } }");

        var result = await farm.RunAsync("render", path, "--frames", "1-10,x7");

        Assert.True(result.Code == 2, result.ToString());
        Assert.Contains("x7", result.Stderr);
    }

    [Fact]
    public async Task HostileRequestFile_WithAPathOutsideTheJob_Exits2_AndSubmitsNothing()
    {
        using var dir = new TempDir("hostile");
        dir.WriteFile("ok.txt", "ok");
        var request = dir.WriteFile("job.json", """
            {"name": "hostile", "tasks": [{"id": "t", "outputs": ["../../escape.txt"],
              "commands": [{"executable": "/bin/true"}]}]}
            """);
        var before = (await farm.RunAsync("jobs", "--json")).Stdout;

        var result = await farm.RunAsync("submit", "--request", request);

        Assert.True(result.Code == 2, result.ToString());
        Assert.Contains("..", result.Stderr);
        Assert.Equal(before, (await farm.RunAsync("jobs", "--json")).Stdout);
    }

    [Fact]
    public async Task MalformedRequestFile_Exits2()
    {
        using var dir = new TempDir("malformed");
        var request = dir.WriteFile("job.json", "{ \"tasks\": [ { \"id\": ");

        var result = await farm.RunAsync("submit", "--request", request);

        Assert.True(result.Code == 2, result.ToString());
        Assert.Contains("not valid", result.Stderr);
    }

    [Fact]
    public async Task UnknownJobId_Exits3_AndSaysHowToListJobs()
    {
        var result = await farm.RunAsync("status", "lq-999999");

        Assert.True(result.Code == 3, result.ToString());
        Assert.Contains("farm jobs", result.Stderr);
    }

    [Fact]
    public async Task UnknownPlugin_Exits3_AndNamesThePlugins()
    {
        var result = await farm.RunAsync("jobs", "--plugin", "NoSuchFarm");

        Assert.True(result.Code == 3, result.ToString());
        Assert.Contains("NoSuchFarm", result.Stderr);
        Assert.Contains("LocalQueue", result.Stderr);
    }

    [Fact]
    public async Task UnreachableFarm_Exits3()
    {
        var port = FreePort.Get();
        var result = await farm.RunAsync("jobs", "--plugin", "ReferenceFarm", "--set", $"Address=http://127.0.0.1:{port}", "--set", "Token=t");

        Assert.True(result.Code == 3, result.ToString());
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Interrupted_Wait_Exits130_LeavesTheJobRunning_AndSaysHowToFollowIt()
    {
        var submit = await farm.RunAsync("submit", "--", "/bin/sh", "-c", "sleep 30");
        var id = submit.Stdout.Trim();
        using var interrupt = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));

        var result = await farm.RunAsync(["wait", id], interrupt.Token);

        Assert.True(result.Code == 130, result.ToString());
        Assert.Contains($"farm wait {id}", result.Stderr);
        var status = await farm.RunAsync("status", id, "--json");
        Assert.DoesNotContain("Cancelled", status.Stdout);
        await farm.RunAsync("stop", id);
    }

    [Fact]
    public async Task RealProcess_SubmitWait_Exits0_AndExit1ForAFailure()
    {
        var ok = await farm.RunProcessAsync(["submit", "--wait", "--", "/bin/echo", "from a real process"]);
        var bad = await farm.RunProcessAsync(["submit", "--wait", "--", "/bin/false"]);
        var usage = await farm.RunProcessAsync(["render"]);

        Assert.True(ok.Code == 0, ok.ToString());
        Assert.True(bad.Code == 1, bad.ToString());
        Assert.True(usage.Code == 2, usage.ToString());
    }

    [Fact]
    public async Task HostExitsRightAfterSubmitting_TheJobCompletes_AndANewHostReadsItsStateAndLog()
    {
        var nonce = Guid.NewGuid().ToString("N");
        var submit = await farm.RunProcessAsync(["submit", "--json", "--", "/bin/sh", "-c", $"sleep 1; echo {nonce}"]);
        Assert.True(submit.Code == 0, submit.ToString());
        var id = System.Text.Json.JsonDocument.Parse(submit.Stdout).RootElement.GetProperty("id").GetString()!;

        var wait = await farm.RunProcessAsync(["wait", id]);
        var log = await farm.RunProcessAsync(["log", id]);

        Assert.True(wait.Code == 0, wait.ToString());
        Assert.Contains(nonce, log.Stdout);
    }

    [Fact]
    public async Task RealProcess_Sigint_DuringWait_Exits130()
    {
        var submit = await farm.RunAsync("submit", "--", "/bin/sh", "-c", "sleep 30");
        var id = submit.Stdout.Trim();
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "farm.dll"));
        info.ArgumentList.Add("wait");
        info.ArgumentList.Add(id);
        using var tracker = new ProcessTracker();
        using var process = tracker.Start(info);
        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        await Task.Delay(TimeSpan.FromSeconds(2));

        ProcessTracker.Kill(process.Id, 2);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);

        Assert.True(process.ExitCode == 130, $"exit {process.ExitCode}: {await stderr}");
        Assert.Contains("keeps running", await stderr);
        await farm.RunAsync("stop", id);
    }
}

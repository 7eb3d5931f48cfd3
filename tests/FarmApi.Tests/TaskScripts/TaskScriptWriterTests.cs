using System.Diagnostics;
using FarmApi.TaskScripts;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmApi.Tests.TaskScripts;

public sealed class TaskScriptWriterTests : IDisposable
{
    private readonly TempDir _dir = new("taskscript");

    public void Dispose() => _dir.Dispose();

    private static TaskSpec Shell(string id, string script, params string[] outputs) =>
        new(id, [Command.Of("/bin/sh", "-c", script)], Outputs: outputs);

    private async Task<(int ExitCode, string Output)> RunAsync(string script, int index, TimeSpan? limit = null)
    {
        var path = _dir.Combine("task.sh");
        await File.WriteAllTextAsync(path, script);
        var info = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(path);
        info.Environment["IDX"] = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(limit ?? TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    private TaskScriptOptions Options => new() { IndexVariable = "IDX", JobFolder = _dir.Combine("job") };

    [Fact]
    public async Task RunsTheSelectedTasksCommandsInOrder_InTheJobFolder_AndRecordsTheExitCode()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var script = TaskScriptWriter.Write(
            [new TaskScriptEntry(0, Shell("a", "echo A > a.txt")),
             new TaskScriptEntry(1, new TaskSpec("b", [Command.Of("/bin/sh", "-c", "echo first > b.txt"), Command.Of("/bin/sh", "-c", "echo second >> b.txt")]))],
            Options);

        var (code, _) = await RunAsync(script, 1);

        Assert.Equal(0, code);
        Assert.Equal("first\nsecond\n", await File.ReadAllTextAsync(_dir.Combine("job", "b.txt")));
        Assert.False(File.Exists(_dir.Combine("job", "a.txt")));
        Assert.Equal("0", (await File.ReadAllTextAsync(_dir.Combine("job", ".farm", "status", "b.exit"))).Trim());
    }

    [Fact]
    public async Task FirstNonZeroExit_StopsTheTask_WithThatCode()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var task = new TaskSpec("t", [Command.Of("/bin/sh", "-c", "exit 7"), Command.Of("/bin/sh", "-c", "touch ran-after")]);
        var (code, output) = await RunAsync(TaskScriptWriter.Write([new TaskScriptEntry(0, task)], Options), 0);

        Assert.Equal(7, code);
        Assert.False(File.Exists(_dir.Combine("job", "ran-after")));
        Assert.Contains("exited with 7", output);
        Assert.Equal("7", (await File.ReadAllTextAsync(_dir.Combine("job", ".farm", "status", "t.exit"))).Trim());
    }

    [Fact]
    public async Task MissingDeclaredOutput_FailsTheTask()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var script = TaskScriptWriter.Write([new TaskScriptEntry(0, Shell("t", "true", "out/frame.png"))], Options);

        var (code, output) = await RunAsync(script, 0);

        Assert.Equal(TaskScriptWriter.MissingOutputExitCode, code);
        Assert.Contains("missing output out/frame.png", output);
    }

    [Fact]
    public async Task HostileWords_AreNeverInterpretedByTheShell()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var hostile = "'; touch pwned; echo '$(touch pwned2)`touch pwned3`\nx";
        var task = new TaskSpec("t", [Command.Of("/usr/bin/printf", "%s", hostile)]);
        var options = Options with { Environment = new Dictionary<string, string> { ["FARM_X"] = hostile } };

        var (code, output) = await RunAsync(TaskScriptWriter.Write([new TaskScriptEntry(0, task)], options), 0);

        Assert.Equal(0, code);
        Assert.Contains(hostile, output);
        Assert.Empty(Directory.GetFiles(_dir.Combine("job"), "pwned*"));
    }

    [Fact]
    public async Task Timeout_KillsTheTask_AndRecords124()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var task = new TaskSpec("slow", [Command.Of("/bin/sh", "-c", "sleep 30")], Timeout: TimeSpan.FromSeconds(1));
        var watch = Stopwatch.StartNew();

        var (code, output) = await RunAsync(TaskScriptWriter.Write([new TaskScriptEntry(0, task)], Options), 0);

        Assert.Equal(TaskScriptWriter.TimeoutExitCode, code);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(25), $"took {watch.Elapsed}");
        Assert.Contains("timed out", output);
    }

    [Fact]
    public async Task UnknownIndex_ExitsWithAClearMessage()
    {
        Directory.CreateDirectory(_dir.Combine("job"));
        var (code, output) = await RunAsync(TaskScriptWriter.Write([new TaskScriptEntry(0, Shell("a", "true"))], Options), 5);
        Assert.Equal(2, code);
        Assert.Contains("no task has index 5", output);
    }

    [Fact]
    public void BadInput_IsRefused()
    {
        Assert.Throws<ArgumentException>(() => TaskScriptWriter.Write([new TaskScriptEntry(0, Shell("a", "true")), new TaskScriptEntry(0, Shell("b", "true"))], Options));
        Assert.Throws<ArgumentException>(() => TaskScriptWriter.Write([new TaskScriptEntry(0, Shell("a", "true"))], Options with { IndexVariable = "X; rm" }));
        Assert.Throws<ArgumentException>(() => TaskScriptWriter.Write([new TaskScriptEntry(0, Shell("a", "true"))],
            Options with { Environment = new Dictionary<string, string> { ["A B"] = "x" } }));
    }
}

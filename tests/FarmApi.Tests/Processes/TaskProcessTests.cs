using System.Diagnostics;
using System.Text;
using FarmApi.Processes;
using Xunit;

namespace FarmApi.Tests.Processes;

public sealed class TaskProcessTests
{
    private static readonly IReadOnlyDictionary<string, string> Environment = new Dictionary<string, string>
    {
        ["PATH"] = "/usr/bin:/bin",
        ["GREETING"] = "hello from the environment",
    };

    [Fact]
    public void RunToEnd_ReturnsExitCodeAndOutput_InOrder()
    {
        var output = new StringBuilder();
        var process = TaskProcess.Start("/bin/sh", ["-c", "echo one; echo \"$GREETING\" >&2; pwd; exit 3"], Environment, "/tmp");

        var exitCode = process.RunToEnd(text => output.Append(text));

        Assert.Equal(3, exitCode);
        Assert.Equal("one\nhello from the environment\n/tmp\n", output.ToString());
    }

    [Fact]
    public void RunToEnd_KillsWhatTheCommandLeftRunning_AndReturnsPromptly()
    {
        var pidFile = Path.Combine(Path.GetTempPath(), $"taskprocess-{Guid.NewGuid():N}.pid");
        var watch = Stopwatch.StartNew();
        var process = TaskProcess.Start("/bin/sh", ["-c", $"sleep 60 & echo $! > {pidFile}; echo started"], Environment, "/tmp");

        var exitCode = process.RunToEnd(_ => { });

        Assert.Equal(0, exitCode);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"RunToEnd took {watch.Elapsed}");
        var straggler = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        File.Delete(pidFile);
        Assert.True(WaitUntilGone(straggler, TimeSpan.FromSeconds(5)), $"the background sleep {straggler} is still alive");
    }

    [Fact]
    public void RunToEnd_EndsWithTheCommand_EvenWhenWhatItLeftKeepsWriting()
    {
        var watch = Stopwatch.StartNew();
        var process = TaskProcess.Start("/bin/sh", ["-c", "(while true; do echo chatter; sleep 0.01; done) & echo started"], Environment, "/tmp");

        var exitCode = process.RunToEnd(_ => { });

        Assert.Equal(0, exitCode);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"RunToEnd took {watch.Elapsed}");
    }

    [Fact]
    public void KillGroup_FromAnotherThread_EndsRunToEnd_WithTheSignal()
    {
        var process = TaskProcess.Start("/bin/sh", ["-c", "sleep 60; echo never"], Environment, "/tmp");
        using var timer = new Timer(_ => process.KillGroup(), null, TimeSpan.FromMilliseconds(200), Timeout.InfiniteTimeSpan);
        var output = new StringBuilder();

        var exitCode = process.RunToEnd(text => output.Append(text));

        Assert.Equal(128 + 9, exitCode);
        Assert.Equal(string.Empty, output.ToString());
    }

    [Fact]
    public void Start_MissingWorkingDirectory_IsAClearError()
    {
        var error = Assert.Throws<IOException>(() => TaskProcess.Start("/bin/true", [], Environment, "/no/such/folder"));
        Assert.Contains("No such file", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void RunToEnd_Twice_IsAClearError()
    {
        var process = TaskProcess.Start("/bin/true", [], Environment, "/tmp");
        Assert.Equal(0, process.RunToEnd(_ => { }));
        Assert.Throws<InvalidOperationException>(() => process.RunToEnd(_ => { }));
    }

    private static bool WaitUntilGone(int pid, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (!Directory.Exists($"/proc/{pid}") || File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal))
            {
                return true;
            }

            Thread.Sleep(20);
        }

        return false;
    }
}

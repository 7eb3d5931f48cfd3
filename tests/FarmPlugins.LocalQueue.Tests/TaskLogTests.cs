using System.Text;
using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Data.Sqlite;
using Xunit;
using static FarmPlugins.LocalQueue.Tests.LocalQueueFarm;

namespace FarmPlugins.LocalQueue.Tests;

/// <summary>
/// A task's own log: short attempts keep their lines in the queue (no file per task), a long or chatty attempt makes it a
/// file that can be followed, and either way the whole log reads back in order, from any offset.
/// </summary>
public sealed class TaskLogTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);
    private readonly LocalQueueFarm _farm = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private Task<string> SubmitAsync(IReadOnlyList<TaskSpec> tasks, int maxAttempts = 1) => _farm.SubmitAsync(tasks, maxAttempts, "logs");

    private Task<Job> WaitTerminalAsync(string jobId) => _farm.WaitTerminalAsync(jobId, Generous);

    private string TaskLogFile(string jobId, string taskId) =>
        new LocalQueuePaths(_farm.DataDirectory).TaskLog(QueueStore.ParseJobId(jobId)!.Value, taskId);

    [Fact]
    public async Task ShortTasks_KeepTheirLogsInTheQueue_AndEachReadsWhole()
    {
        var jobId = await SubmitAsync([.. Enumerable.Range(1, 12).Select(i => Sh($"t{i}", $"echo out{i}; echo err{i} >&2"))]);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);

        // A host process that did not run anything reads them.
        var reader = await _farm.NewPluginAsync();
        for (var i = 1; i <= 12; i++)
        {
            var log = await reader.ReadTaskLogAsync(jobId, $"t{i}", 0);
            Assert.True(log.IsComplete);
            Assert.Equal(Encoding.UTF8.GetByteCount(log.Text), log.NextOffset);
            var lines = log.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains($"[t{i}] farm: attempt 1 started on", lines[0]);
            Assert.Contains(lines, l => l.EndsWith($"[t{i}] out{i}", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.EndsWith($"[t{i}] err{i}", StringComparison.Ordinal));
            Assert.EndsWith($"[t{i}] farm: completed", lines[^1]);
            Assert.DoesNotContain(lines, l => !l.Contains($"[t{i}]", StringComparison.Ordinal));

            // Any offset gives the rest; the end gives nothing and says so.
            var rest = await reader.ReadTaskLogAsync(jobId, $"t{i}", 10);
            Assert.Equal(log.Text[10..], rest.Text);
            var end = await reader.ReadTaskLogAsync(jobId, $"t{i}", log.NextOffset);
            Assert.Equal(string.Empty, end.Text);
            Assert.True(end.IsComplete);
        }

        // Short tasks made no file of their own (the job's render log holds every line too).
        Assert.All(Enumerable.Range(1, 12), i => Assert.False(File.Exists(TaskLogFile(jobId, $"t{i}")), $"t{i} has a log file"));
        var render = (await reader.ReadRenderLogAsync(jobId, 0)).Text;
        Assert.All(Enumerable.Range(1, 12), i => Assert.Contains($"[t{i}] out{i}", render));
    }

    [Fact]
    public async Task ALongTask_HasAFileLog_ThatCanBeFollowedWhileItRuns()
    {
        var jobId = await SubmitAsync([Sh("long", "echo begin; sleep 3; echo end")]);

        var reader = await _farm.NewPluginAsync();
        await Eventually.WaitAsync(async () => (await reader.ReadTaskLogAsync(jobId, "long", 0)).Text.Contains("[long] begin", StringComparison.Ordinal),
            Generous, "the running task's first line in its log");
        var running = await reader.ReadTaskLogAsync(jobId, "long", 0);
        Assert.False(running.IsComplete);
        Assert.DoesNotContain("end", running.Text.Split('\n').Select(l => l.Split("] ").Last()));
        Assert.True(File.Exists(TaskLogFile(jobId, "long")));

        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);
        var rest = await reader.ReadTaskLogAsync(jobId, "long", running.NextOffset);
        Assert.Contains("[long] end", rest.Text);
        Assert.Contains("farm: completed", rest.Text);
        Assert.True(rest.IsComplete);
    }

    [Fact]
    public async Task AShortFailedAttempt_ThenALongOne_KeepOneLogInOrder()
    {
        // Attempt 1 fails at once (its lines go to the queue), attempt 2 runs long enough to make the file: the file
        // starts with attempt 1's lines.
        var jobId = await SubmitAsync([Sh("flaky", "if [ ! -f tried ]; then touch tried; echo first; exit 1; fi; echo second; sleep 0.5")], maxAttempts: 2);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);

        var text = (await (await _farm.NewPluginAsync()).ReadTaskLogAsync(jobId, "flaky", 0)).Text;
        var order = new[] { "attempt 1 started", "[flaky] first", "failed with exit code 1", "attempt 2 started", "[flaky] second", "farm: completed" }
            .Select(s => text.IndexOf(s, StringComparison.Ordinal)).ToList();
        Assert.DoesNotContain(-1, order);
        Assert.Equal(order.Order(), order);
        Assert.True(File.Exists(TaskLogFile(jobId, "flaky")));
    }

    [Fact]
    public async Task AShortTaskWithMuchOutput_LosesNoLine()
    {
        // 20,000 lines in well under the file delay: more than the queue keeps inline, so the log becomes a file mid-task.
        var jobId = await SubmitAsync([Sh("chatty", "seq 1 20000")]);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);

        var text = (await (await _farm.NewPluginAsync()).ReadTaskLogAsync(jobId, "chatty", 0)).Text;
        var numbers = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split("] ").Last()).Where(l => !l.StartsWith("farm:", StringComparison.Ordinal)).ToList();
        Assert.Equal(Enumerable.Range(1, 20000).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), numbers);
        Assert.True(File.Exists(TaskLogFile(jobId, "chatty")));
    }

    [Fact]
    public async Task AQueueFromBeforeInlineLogs_GetsTheColumn_AndRunsJobs()
    {
        // A database made by an earlier version has no log column: the plug-in and its agents add it.
        _ = await _farm.NewPluginAsync();
        using (var connection = new SqliteConnection($"Data Source={Path.Combine(_farm.DataDirectory, "queue.db")};Pooling=False"))
        {
            connection.Open();
            using var drop = connection.CreateCommand();
            drop.CommandText = "ALTER TABLE tasks DROP COLUMN log";
            drop.ExecuteNonQuery();
        }

        var jobId = await SubmitAsync([Sh("t", "echo again")]);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(jobId)).State);
        Assert.Contains("[t] again", (await (await _farm.NewPluginAsync()).ReadTaskLogAsync(jobId, "t", 0)).Text);
    }
}

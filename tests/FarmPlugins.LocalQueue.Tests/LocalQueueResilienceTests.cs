using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;
using static FarmPlugins.LocalQueue.Tests.LocalQueueFarm;

namespace FarmPlugins.LocalQueue.Tests;

/// <summary>Real agents, real processes: killed agents, racing agents, big dependency graphs, a locked database.</summary>
public sealed class LocalQueueResilienceTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromMinutes(3);
    private readonly LocalQueueFarm _farm = new();
    private readonly TempDir _side = new("lqside");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _farm.DisposeAsync();
        _side.Dispose();
    }

    private Task<string> SubmitAsync(IReadOnlyList<TaskSpec> tasks, int maxAttempts = 1) => _farm.SubmitAsync(tasks, maxAttempts, "resilience");

    private Task<Job> WaitTerminalAsync(string jobId) => _farm.WaitTerminalAsync(jobId, Generous);

    private async Task<string> DescribeFailuresAsync(string jobId)
    {
        var plugin = await _farm.NewPluginAsync();
        var failed = (await plugin.GetTasksAsync(jobId)).Where(t => t.State != JobState.Completed).Take(5).ToList();
        var text = string.Join("\n", failed.Select(t => $"{t.Id}: {t.State} attempts {t.Attempts} exit {t.ExitCode} node {t.Node}"));
        foreach (var task in failed.Take(2))
        {
            text += $"\n--- {task.Id}\n" + (await plugin.ReadTaskLogAsync(jobId, task.Id, 0)).Text;
        }

        return text;
    }

    private static string[] Lines(string path) => File.Exists(path) ? File.ReadAllLines(path) : [];

    [Fact]
    public async Task AgentKilledWithSigkill_MidTask_TheTaskRunsAgain_AndTheJobCompletes()
    {
        _farm.Settings["Agents"] = "1";
        _farm.Settings["LeaseSeconds"] = "3";
        var runs = _side.Combine("runs.txt");
        var jobId = await SubmitAsync([Sh("slow", $"echo $$ >> '{runs}'; sleep 2; echo finished")], maxAttempts: 3);
        await Eventually.WaitAsync(() => Lines(runs).Length == 1, Generous, "the first attempt to start");
        var firstAttempt = int.Parse(Lines(runs)[0]);

        _farm.KillAgents();

        var job = await WaitTerminalAsync(jobId);
        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(2, Lines(runs).Length);
        var task = Assert.Single(await (await _farm.NewPluginAsync()).GetTasksAsync(jobId));
        Assert.Equal(2, task.Attempts);
        // The lost attempt's process group was killed before the task ran again.
        Assert.False(ProcessTracker.IsAlive(firstAttempt), $"the orphaned first attempt (pid {firstAttempt}) is still running");
    }

    [Fact]
    public async Task FourAgents_RaceThroughFiveHundredTasks_EachRunsExactlyOnce_InItsOwnProcess()
    {
        _farm.Settings["Agents"] = "4";
        var pids = _side.Combine("pids");
        Directory.CreateDirectory(pids);
        var tasks = Enumerable.Range(0, 500).Select(i => Sh($"t{i:000}", $"echo $$ >> '{pids}/t{i:000}'")).ToList();

        var jobId = await SubmitAsync(tasks);
        var job = await WaitTerminalAsync(jobId);

        Assert.True(job.State == JobState.Completed, await DescribeFailuresAsync(jobId));
        var files = Directory.GetFiles(pids);
        Assert.Equal(500, files.Length);
        var recorded = files.Select(f => Lines(f)).ToList();
        Assert.All(recorded, lines => Assert.Single(lines));
        Assert.Equal(500, recorded.Select(l => l[0]).Distinct().Count());
        var nodes = (await (await _farm.NewPluginAsync()).GetTasksAsync(jobId)).Select(t => t.Node).Distinct().Count();
        Assert.True(nodes >= 2, $"only {nodes} agent(s) ran tasks");
    }

    [Fact]
    public async Task ThousandTasks_WithDependencies_CompleteInDependencyOrder()
    {
        _farm.Settings["Agents"] = "2";
        var order = _side.Combine("order.txt");
        // 100 chains of ten: c{k}s{n} depends on c{k}s{n-1}; the order file must show every chain in order.
        var tasks = new List<TaskSpec>();
        for (var step = 0; step < 10; step++)
        {
            for (var chain = 0; chain < 100; chain++)
            {
                var id = $"c{chain}s{step}";
                tasks.Add(Sh(id, $"echo {id} >> '{order}'", step == 0 ? null : [$"c{chain}s{step - 1}"]));
            }
        }

        var jobId = await SubmitAsync(tasks);
        var job = await WaitTerminalAsync(jobId);

        Assert.True(job.State == JobState.Completed, await DescribeFailuresAsync(jobId));
        var lines = Lines(order);
        Assert.Equal(1000, lines.Length);
        var position = lines.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i);
        for (var chain = 0; chain < 100; chain++)
        {
            for (var step = 1; step < 10; step++)
            {
                Assert.True(position[$"c{chain}s{step - 1}"] < position[$"c{chain}s{step}"], $"c{chain}s{step} ran before its dependency");
            }
        }
    }

    [Fact]
    public async Task ALockedDatabase_GivesAClearError_NotAHang()
    {
        _farm.Settings["BusyTimeoutSeconds"] = "1";
        var plugin = await _farm.NewPluginAsync();
        var jobId = await SubmitAsync([Sh("t", "true")]);
        await WaitTerminalAsync(jobId);
        _farm.KillAgents();

        // Another connection holds an exclusive lock on the database, as a stuck tool would.
        using var locker = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(_farm.DataDirectory, "queue.db")};Pooling=False");
        locker.Open();
        using (var command = locker.CreateCommand())
        {
            command.CommandText = "BEGIN EXCLUSIVE";
            command.ExecuteNonQuery();
        }

        // Readers go on under WAL; a write waits BusyTimeoutSeconds, then fails with a message saying what to do.
        Assert.Equal(JobState.Completed, (await plugin.GetJobAsync(jobId)).State);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAnyAsync<FarmPluginException>(() => SubmitAsync([Sh("u", "true")]));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"the locked database held the call for {watch.Elapsed}");
        Assert.Contains("locked", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("queue.db", error.Message);
    }
}

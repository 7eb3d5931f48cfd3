using System.Text;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Time.Testing;
using ReferenceFarm.Protocol;
using Xunit;

namespace ReferenceFarm.Server.Tests;

public sealed class StoreTests : IAsyncLifetime
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(30);
    private readonly TempDir _temp = new("rfstore");
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z"));
    private Store _store = null!;

    public async Task InitializeAsync() => _store = await Store.OpenAsync(_temp.Path, _time);

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        _temp.Dispose();
    }

    private async Task<string> SubmitAsync(int tasks = 1, int maxAttempts = 3, int priority = 50, Action<SubmitRequest>? edit = null)
    {
        var request = new SubmitRequest { ContextId = Guid.NewGuid().ToString(), Name = "job", Priority = priority, MaxAttempts = maxAttempts };
        for (var i = 0; i < tasks; i++)
        {
            request.Tasks.Add(new TaskSpec { Id = $"t{i}", Host = "command", Commands = { new Command { Executable = "true" } } });
        }

        edit?.Invoke(request);
        var (jobId, _, error) = await _store.SubmitAsync(request, "admin");
        Assert.Null(error);
        return jobId;
    }

    private Task<Store.Report> ReportAsync(LeaseReply lease, int outcome, string agent = "a") =>
        _store.CompleteAsync(new CompleteRequest { Agent = agent, JobId = lease.JobId, TaskId = lease.TaskId, Lease = lease.Lease, Outcome = outcome });

    [Fact]
    public async Task Lapsed_lease_requeues_counts_an_attempt_and_fences_the_old_report()
    {
        var jobId = await SubmitAsync();
        var first = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        _time.Advance(TimeSpan.FromSeconds(31));
        var lapsed = await _store.ReapLapsedAsync();
        Assert.Single(lapsed);

        var second = (await _store.LeaseAsync("b", ["command"], Lease))!.Reply;
        Assert.Equal(2, second.Attempt);
        Assert.False((await ReportAsync(first, 0)).Accepted);
        Assert.False((await ReportAsync(second, 0, "a")).Accepted);
        Assert.True((await ReportAsync(second, 0, "b")).Accepted);
        Assert.False((await ReportAsync(second, 0, "b")).Accepted);
        var job = await _store.GetJobAsync(jobId);
        Assert.Equal(2, job!.State);
    }

    [Fact]
    public async Task Heartbeat_renews_and_restart_grace_extends_running_leases()
    {
        await SubmitAsync();
        var lease = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        _time.Advance(TimeSpan.FromSeconds(20));
        Assert.Empty(await _store.HeartbeatAsync("a", [new HeldTask { JobId = lease.JobId, TaskId = lease.TaskId, Lease = lease.Lease }], Lease));
        _time.Advance(TimeSpan.FromSeconds(20));
        Assert.Empty(await _store.ReapLapsedAsync());
        await _store.GrantRestartGraceAsync(TimeSpan.FromSeconds(60));
        _time.Advance(TimeSpan.FromSeconds(50));
        Assert.Empty(await _store.ReapLapsedAsync());
        var cancel = await _store.HeartbeatAsync("a", [new HeldTask { JobId = lease.JobId, TaskId = lease.TaskId, Lease = lease.Lease + 1 }], Lease);
        Assert.Single(cancel);
    }

    [Fact]
    public async Task Priority_then_submission_order_dependencies_and_hosts_decide_what_runs()
    {
        var low = await SubmitAsync(priority: 10);
        var high = await SubmitAsync(tasks: 2, priority: 90, edit: r => r.Tasks[0].DependsOn.Add("t1"));
        var blender = await SubmitAsync(priority: 100, edit: r => r.Tasks[0].Host = "blender");
        var first = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        Assert.Equal((high, "t1"), (first.JobId, first.TaskId));
        var second = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        Assert.Equal(low, second.JobId);
        Assert.Null(await _store.LeaseAsync("a", ["command"], Lease));
        await ReportAsync(first, 0);
        var third = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        Assert.Equal((high, "t0"), (third.JobId, third.TaskId));
        Assert.Equal(blender, (await _store.LeaseAsync("b", ["blender"], Lease))!.Reply.JobId);
    }

    [Fact]
    public async Task Interrupted_is_not_an_attempt_and_three_failures_block_the_agent()
    {
        var jobId = await SubmitAsync(maxAttempts: 10);
        var lease = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        await ReportAsync(lease, 2);
        Assert.Equal(0, (await _store.GetTasksAsync(jobId))![0].Attempts);
        for (var i = 0; i < 3; i++)
        {
            lease = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
            Assert.True((await ReportAsync(lease, 1)).Accepted);
        }

        Assert.Null(await _store.LeaseAsync("a", ["command"], Lease));
        Assert.NotNull(await _store.LeaseAsync("b", ["command"], Lease));
    }

    [Fact]
    public async Task Last_failed_attempt_fails_the_task_its_dependents_and_the_job()
    {
        var jobId = await SubmitAsync(tasks: 2, maxAttempts: 1, edit: r => r.Tasks[1].DependsOn.Add("t0"));
        var lease = (await _store.LeaseAsync("a", ["command"], Lease))!.Reply;
        await ReportAsync(lease, 1);
        var tasks = await _store.GetTasksAsync(jobId);
        Assert.All(tasks!, t => Assert.Equal(4, t.State));
        Assert.Equal(4, (await _store.GetJobAsync(jobId))!.State);
        var admin = new Caller("admin", "client", true);
        Assert.Equal(CommandResult.Done, (await _store.RestartAsync(jobId, [], admin)).Result);
        Assert.Equal(0, (await _store.GetJobAsync(jobId))!.State);
    }

    [Fact]
    public async Task Same_render_context_submits_once()
    {
        var request = new SubmitRequest { ContextId = Guid.NewGuid().ToString(), Name = "job", Priority = 50, MaxAttempts = 1 };
        request.Tasks.Add(new TaskSpec { Id = "t", Host = "command", Commands = { new Command { Executable = "true" } } });
        var first = await _store.SubmitAsync(request, "alice");
        var second = await _store.SubmitAsync(request, "alice");
        Assert.Equal(first.JobId, second.JobId);
        Assert.True(second.Existing);
    }
}

public sealed class LogStoreTests
{
    [Fact]
    public async Task Reads_never_split_a_utf8_character()
    {
        using var temp = new TempDir("rflog");
        var logs = new LogStore(temp.Path);
        var text = new string('a', LogStore.MaxRead - 1) + "é and more";
        await logs.AppendTaskOutputAsync(1, 0, "t", text);
        var (first, length) = await logs.ReadAsync(1, 0, 0);
        Assert.Equal(LogStore.MaxRead - 1, first.Length);
        var (rest, _) = await logs.ReadAsync(1, 0, first.Length);
        Assert.Equal(text, Encoding.UTF8.GetString(first) + Encoding.UTF8.GetString(rest));
        Assert.Equal(Encoding.UTF8.GetByteCount(text), length);
        var (past, _) = await logs.ReadAsync(1, 0, length + 100);
        Assert.Empty(past);
    }
}

public sealed class ServerOptionsTests
{
    [Theory]
    [InlineData("http://127.0.0.1:5000", true)]
    [InlineData("http://localhost:5000", true)]
    [InlineData("http://[::1]:5000", true)]
    [InlineData("http://0.0.0.0:5000", false)]
    [InlineData("https://0.0.0.0:5000", true)]
    [InlineData("http://192.168.1.10:5000", false)]
    public void Tls_is_required_off_loopback(string url, bool valid)
    {
        var options = new ServerOptions { Listen = new Uri(url) };
        if (valid)
        {
            options.Validate();
        }
        else
        {
            Assert.Contains("TLS is mandatory", Assert.Throws<ArgumentException>(options.Validate).Message);
        }
    }
}

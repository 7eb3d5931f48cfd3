using FarmApi;
using ReferenceFarm.Protocol;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>The batched Report call, as an agent leasing ahead uses it: each report is fenced by its own lease.</summary>
public sealed class ReportTests
{
    [Fact]
    public async Task One_call_applies_current_reports_rejects_a_superseded_one_and_leases_several_tasks_in_order()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "batched",
            [.. Enumerable.Range(0, 3).Select(i => new FarmApi.TaskSpec($"t{i}", [new FarmApi.Command("true", [])]))]));
        using var channel = FarmChannel.Create(new Uri(farm.Address), null);
        var agents = new Agents.AgentsClient(channel);
        var auth = FarmChannel.Bearer(File.ReadAllText(farm.AgentTokenFile).Trim());
        var ask = new LeaseRequest { Agent = "sim", Hosts = { new Installation { Host = "command" } }, MaxTasks = 3 };

        var first = await agents.ReportAsync(new ReportRequest { Agent = "sim", Next = ask }, auth);
        Assert.Equal(["t0", "t1", "t2"], first.Leases.Select(l => l.TaskId));
        var (t0, t1, t2) = (first.Leases[0], first.Leases[1], first.Leases[2]);

        // t0 done; t1 reported with a lease it never held; t2 handed back (not an attempt), then leased again in the same call.
        var second = await agents.ReportAsync(new ReportRequest
        {
            Agent = "sim", Next = ask,
            Reports =
            {
                new CompleteRequest { JobId = jobId, TaskId = "t0", Lease = t0.Lease, Outcome = 0 },
                new CompleteRequest { JobId = jobId, TaskId = "t1", Lease = t1.Lease + 5, Outcome = 0 },
                new CompleteRequest { JobId = jobId, TaskId = "t2", Lease = t2.Lease, Outcome = 2 },
            },
        }, auth);
        Assert.Equal(["t1"], second.Rejected.Select(r => r.TaskId));
        var again = Assert.Single(second.Leases);
        Assert.Equal(("t2", t2.Lease + 1, 1), (again.TaskId, again.Lease, again.Attempt));

        // The superseded attempt of t2 can no longer report.
        var stale = await agents.ReportAsync(new ReportRequest
        {
            Agent = "sim", Reports = { new CompleteRequest { JobId = jobId, TaskId = "t2", Lease = t2.Lease, Outcome = 0 } },
        }, auth);
        Assert.Equal(["t2"], stale.Rejected.Select(r => r.TaskId));
        Assert.Empty(stale.Leases);

        var tasks = (await plugin.GetTasksAsync(jobId)).ToDictionary(t => t.Id);
        Assert.Equal((JobState.Completed, 1), (tasks["t0"].State, tasks["t0"].Attempts));
        Assert.Equal(JobState.Running, tasks["t1"].State);
        Assert.Equal((JobState.Running, 1), (tasks["t2"].State, tasks["t2"].Attempts));
        Assert.Equal(1, Db.CompletionsByTask(farm.DataDirectory, jobId)["t0"]);
    }
}

using System.Globalization;
using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary><c>farm server</c> and <c>farm agent</c>: the CLI launches the executables with the arguments as typed, and
/// passes a SIGTERM on.</summary>
public sealed class CliLaunchTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(60);

    private static string CliDll => Path.Combine(FarmCluster.RepoRoot, "HostAdapters", "Cli", "bin", "Debug", "net10.0", "farm.dll");

    /// <summary>The one child a <c>farm</c> process launched (read from /proc), tracked so the test stops it too.</summary>
    private static async Task<int> ChildOfAsync(ManagedProcess cli)
    {
        var child = 0;
        await Eventually.WaitAsync(() =>
        {
            var children = Directory.GetDirectories($"/proc/{cli.Pid}/task")
                .SelectMany(task => File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .ToList();
            child = children.Count > 0 ? int.Parse(children[0], CultureInfo.InvariantCulture) : 0;
            return child > 0;
        }, Long, $"{cli.Label} to start its child");
        return child;
    }

    [Fact]
    public async Task Farm_server_and_farm_agent_run_a_job_and_a_sigterm_to_farm_stops_them_gracefully()
    {
        await using var farm = new FarmCluster();
        var environment = new Dictionary<string, string> { ["FARM_HOME"] = FarmCluster.RepoRoot };
        var server = farm.Start("farm server", CliDll,
            ["server", "--listen", farm.Address, "--data", farm.DataDirectory, .. farm.ServerTimings], environment);
        await server.WaitForOutputAsync("ready on", Long);
        var serverChild = await ChildOfAsync(server);
        farm.Track(serverChild);
        var agent = farm.Start("farm agent", CliDll,
            ["agent", "--name", "via-cli", "--server", farm.Address, "--token-file", farm.AgentTokenFile, "--hosts", "command",
             "--work", farm.Temp.Combine("agents", "via-cli"), "--heartbeat-ms", "300", "--poll-ms", "1000"], environment);
        var agentChild = await ChildOfAsync(agent);
        farm.Track(agentChild);

        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "via cli", [Jobs.Shell("t", "echo hello from $FARM_AGENT")]));
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, Long);
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        Assert.Contains("hello from via-cli", (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text);

        // A service manager stops `farm agent`: the agent itself drains and exits, and so does farm, with its code.
        agent.Kill(15);
        Assert.Equal(0, await agent.WaitForExitAsync(Long));
        await Eventually.WaitAsync(() => !ProcessTracker.IsAlive(agentChild), Long, "the agent to exit");
        Assert.Contains("Draining", agent.Output);
        server.Kill(15);
        Assert.Equal(0, await server.WaitForExitAsync(Long));
        await Eventually.WaitAsync(() => !ProcessTracker.IsAlive(serverChild), Long, "the server to exit");
    }
}

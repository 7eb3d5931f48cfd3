using FarmApi;
using Grpc.Core;
using ReferenceFarm.Protocol;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SecurityTests
{
    private static async Task<int> RunServerVerbAsync(FarmCluster farm, params string[] args)
    {
        var process = farm.Start("server " + args[0], FarmCluster.Dll("Server"), args, null);
        return await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Missing_wrong_and_wrong_kind_tokens_are_refused_and_change_nothing()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var agentToken = File.ReadAllText(farm.AgentTokenFile).Trim();
        using var channel = FarmChannel.Create(new Uri(farm.Address), null);
        var jobs = new global::ReferenceFarm.Protocol.Jobs.JobsClient(channel);
        var agents = new Agents.AgentsClient(channel);

        var submit = new SubmitRequest { ContextId = Guid.NewGuid().ToString(), Name = "x", Priority = 50, MaxAttempts = 1 };
        submit.Tasks.Add(new global::ReferenceFarm.Protocol.TaskSpec { Id = "t", Host = "command", Commands = { new global::ReferenceFarm.Protocol.Command { Executable = "true" } } });

        var none = await Assert.ThrowsAsync<RpcException>(() => jobs.SubmitAsync(submit).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, none.StatusCode);
        var wrong = await Assert.ThrowsAsync<RpcException>(() => jobs.SubmitAsync(submit, FarmChannel.Bearer("not-a-token")).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        var agentSubmits = await Assert.ThrowsAsync<RpcException>(() => jobs.SubmitAsync(submit, FarmChannel.Bearer(agentToken)).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, agentSubmits.StatusCode);
        var agentLists = await Assert.ThrowsAsync<RpcException>(() => jobs.GetJobsAsync(new GetJobsRequest { State = -1 }, FarmChannel.Bearer(agentToken)).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, agentLists.StatusCode);

        // A real job, then a client token trying to lease it as an agent.
        var admin = await farm.CreatePluginAsync();
        var jobId = await admin.SubmitJobAsync(await Jobs.RequestAsync(admin, "waiting", [Jobs.Shell("t", "true")]));
        var clientLeases = await Assert.ThrowsAsync<RpcException>(() =>
            agents.LeaseAsync(new LeaseRequest { Agent = "thief", Hosts = { new Installation { Host = "command" } } }, FarmChannel.Bearer(farm.AdminToken)).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, clientLeases.StatusCode);

        var jobsNow = await admin.GetJobsAsync();
        Assert.Single(jobsNow);
        Assert.Equal(JobState.Waiting, jobsNow[0].State);
        Assert.Equal(0, (await admin.GetTasksAsync(jobId))[0].Attempts);

        var wrongPlugin = await farm.CreatePluginAsync("wrong-token");
        await Assert.ThrowsAsync<FarmAuthenticationException>(() => wrongPlugin.GetJobsAsync());
        var report = await wrongPlugin.TestAsync();
        Assert.False(report.Passed);
        Assert.DoesNotContain("wrong-token", string.Join(" ", report.Checks.Select(c => c.Detail)));
        Assert.DoesNotContain(farm.AdminToken, farm.Diagnostics());
        Assert.DoesNotContain(agentToken, farm.Diagnostics());
    }

    [Fact]
    public async Task Named_clients_own_their_jobs_and_a_removed_client_is_refused_at_once()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(farm.DataDirectory, "client.token")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(farm.AgentTokenFile));

        // Added while the server runs.
        Assert.Equal(0, await RunServerVerbAsync(farm, "add-client", "alice", "--data", farm.DataDirectory));
        Assert.Equal(0, await RunServerVerbAsync(farm, "add-client", "bob", "--data", farm.DataDirectory));
        Assert.Equal(2, await RunServerVerbAsync(farm, "add-client", "bob", "--data", farm.DataDirectory));
        var aliceFile = Path.Combine(farm.DataDirectory, "clients", "alice.token");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(aliceFile));
        var alice = await farm.CreatePluginAsync(File.ReadAllText(aliceFile).Trim());
        var bob = await farm.CreatePluginAsync(File.ReadAllText(Path.Combine(farm.DataDirectory, "clients", "bob.token")).Trim());
        var admin = await farm.CreatePluginAsync();

        var jobId = await alice.SubmitJobAsync(await Jobs.RequestAsync(alice, "alice's", [Jobs.Shell("t", "true")]));
        Assert.Equal("alice", (await admin.GetJobAsync(jobId)).Properties!["owner"]);
        var denied = await Assert.ThrowsAsync<FarmAuthenticationException>(() => bob.StopJobAsync(jobId));
        Assert.Contains("belongs to another client", denied.Message);
        await Assert.ThrowsAsync<FarmAuthenticationException>(() => bob.DeleteJobAsync(jobId));
        Assert.Equal(JobState.Waiting, (await bob.GetJobAsync(jobId)).State);
        await alice.StopJobAsync(jobId);
        Assert.Equal(JobState.Cancelled, (await admin.GetJobAsync(jobId)).State);
        await Assert.ThrowsAsync<FarmAuthenticationException>(() => bob.RestartJobAsync(jobId));
        await admin.RestartJobAsync(jobId);
        Assert.Equal(JobState.Waiting, (await admin.GetJobAsync(jobId)).State);

        Assert.Equal(0, await RunServerVerbAsync(farm, "remove-client", "alice", "--data", farm.DataDirectory));
        Assert.False(File.Exists(aliceFile));
        await Assert.ThrowsAsync<FarmAuthenticationException>(() => alice.GetJobAsync(jobId));
        Assert.Equal(2, await RunServerVerbAsync(farm, "add-client", "../evil", "--data", farm.DataDirectory));
    }

    [Fact]
    public async Task Agent_refuses_a_token_on_its_command_line()
    {
        await using var farm = new FarmCluster();
        var process = farm.Start("agent", FarmCluster.Dll("Agent"), ["--server", "http://127.0.0.1:1", "--token", "secret"], null);
        Assert.Equal(2, await process.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("--token-file", process.Output);
        var noToken = farm.Start("agent", FarmCluster.Dll("Agent"), ["--server", "http://127.0.0.1:1"], new Dictionary<string, string> { ["FARM_AGENT_TOKEN"] = "" });
        Assert.Equal(2, await noToken.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Non_loopback_listen_requires_tls_and_tls_works_with_the_generated_ca()
    {
        await using var farm = new FarmCluster();
        var plain = farm.Start("server", FarmCluster.Dll("Server"), ["--listen", $"http://0.0.0.0:{farm.Port}", "--data", farm.DataDirectory], null);
        Assert.Equal(2, await plain.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("TLS is mandatory", plain.Output);

        var server = farm.Start("server", FarmCluster.Dll("Server"), ["--listen", $"https://0.0.0.0:{farm.Port}", "--data", farm.DataDirectory], null);
        await server.WaitForOutputAsync("ready on", TimeSpan.FromSeconds(60));
        Assert.Contains("fingerprint", server.Output);
        var ca = Path.Combine(farm.DataDirectory, "tls", "ca.pem");
        var plugin = new ReferenceFarmPlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "ReferenceFarm", LoggerFactory = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string> { ["Address"] = $"https://127.0.0.1:{farm.Port}", ["Token"] = farm.AdminToken, ["CaCertificate"] = ca },
            DataDirectory = farm.Temp.Combine("tls-plugin"),
        });
        await using (plugin)
        {
            Assert.Empty(await plugin.GetJobsAsync());

            // An agent trusting the same CA takes work over TLS.
            farm.Start("agent tls", FarmCluster.Dll("Agent"),
                ["--server", $"https://127.0.0.1:{farm.Port}", "--token-file", farm.AgentTokenFile, "--ca-cert", ca, "--name", "tls", "--hosts", "command",
                 "--work", farm.Temp.Combine("agents", "tls"), "--heartbeat-ms", "300", "--poll-ms", "1000"], null);
            var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "over tls", [Jobs.Shell("t", "echo over tls")]));
            var job = await Jobs.WaitTerminalAsync(plugin, jobId, TimeSpan.FromSeconds(60));
            Assert.True(job.State == JobState.Completed, farm.Diagnostics());
            Assert.Contains("over tls", (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text);
        }

        // Without the CA the server's certificate is not trusted.
        var untrusting = new ReferenceFarmPlugin();
        await untrusting.InitializeAsync(new FarmPluginContext
        {
            PluginName = "ReferenceFarm", LoggerFactory = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string> { ["Address"] = $"https://127.0.0.1:{farm.Port}", ["Token"] = farm.AdminToken },
            DataDirectory = farm.Temp.Combine("tls-plugin2"),
        });
        await using (untrusting)
        {
            var untrusted = await Assert.ThrowsAsync<FarmPluginException>(() => untrusting.GetJobsAsync());
            Assert.Contains("CaCertificate", untrusted.Message);
        }
    }

    [Fact]
    public async Task Agent_takes_its_token_from_the_environment_and_tasks_never_see_it()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var agentToken = File.ReadAllText(farm.AgentTokenFile).Trim();
        farm.Start("agent env", FarmCluster.Dll("Agent"),
            ["--server", farm.Address, "--name", "env", "--hosts", "command", "--work", farm.Temp.Combine("agents", "env"), "--heartbeat-ms", "300", "--poll-ms", "1000"],
            new Dictionary<string, string> { ["FARM_AGENT_TOKEN"] = agentToken });
        var plugin = await farm.CreatePluginAsync();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "env", [Jobs.Shell("t", "env; cat /proc/$PPID/cmdline | tr '\\0' ' '; grep -E '^Sig(Ign|Blk)' /proc/self/status; echo \"session $(ps -o sid= -p $$ | tr -d ' ') group $(ps -o pgid= -p $$ | tr -d ' ') pid $$\"")]));
        var job = await Jobs.WaitTerminalAsync(plugin, jobId, TimeSpan.FromSeconds(60));
        Assert.True(job.State == JobState.Completed, farm.Diagnostics());
        var log = (await plugin.ReadTaskLogAsync(jobId, "t", 0)).Text;
        Assert.Contains("FARM_TASK_ID=t", log);
        Assert.Contains("PATH=", log);
        // No standard signal ignored or blocked (the runtime ignores SIGPIPE, and ignored signals survive exec; glibc keeps its
        // internal 32 and 33 to itself), and a session and process group of its own.
        var ignored = Convert.ToUInt64(System.Text.RegularExpressions.Regex.Match(log, @"SigIgn:\s+([0-9a-f]+)").Groups[1].Value, 16);
        Assert.Equal(0UL, ignored & 0x7fffffffUL);
        Assert.Contains("SigBlk:\t0000000000000000", log);
        var ids = System.Text.RegularExpressions.Regex.Match(log, @"session (\d+) group (\d+) pid (\d+)");
        Assert.True(ids.Success, log);
        Assert.Equal(ids.Groups[3].Value, ids.Groups[1].Value);
        Assert.Equal(ids.Groups[3].Value, ids.Groups[2].Value);
        Assert.DoesNotContain(agentToken, log);
        Assert.DoesNotContain(agentToken, farm.Diagnostics());
    }
}

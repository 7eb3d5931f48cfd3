using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using FarmApi;
using FarmPlugins.ReferenceFarm;
using Microsoft.Extensions.Logging.Abstractions;
using Agents = ReferenceFarm.Protocol.Agents;
using FarmChannel = ReferenceFarm.Protocol.FarmChannel;
using HeartbeatRequest = ReferenceFarm.Protocol.HeartbeatRequest;
using HeldTask = ReferenceFarm.Protocol.HeldTask;
using Installation = ReferenceFarm.Protocol.Installation;
using LeaseRequest = ReferenceFarm.Protocol.LeaseRequest;
using CompleteRequest = ReferenceFarm.Protocol.CompleteRequest;
using LeaseReply = ReferenceFarm.Protocol.LeaseReply;
using ReportRequest = ReferenceFarm.Protocol.ReportRequest;

// Measures the ReferenceFarm against xargs -P 2 in one run; prints a markdown table.
var configuration = args.Contains("--debug") ? "Debug" : "Release";
// Reports and leases per call of the simulated agents (BENCH_CEILING_BATCH; 1 is one report and one lease per call).
var CeilingBatch = int.TryParse(Environment.GetEnvironmentVariable("BENCH_CEILING_BATCH"), out var batch) && batch > 0 ? batch : 4;
var root = FindRoot();
var serverDll = Path.Combine(root, "ReferenceFarm", "Server", "bin", configuration, "net10.0", "ReferenceFarm.Server.dll");
var agentDll = Path.Combine(root, "ReferenceFarm", "Agent", "bin", configuration, "net10.0", "ReferenceFarm.Agent.dll");
var temp = Path.Combine(Path.GetTempPath(), "refarm-bench-" + Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(temp);
var processes = new List<Process>();
var rows = new List<(string Figure, string Value, string Target)>();
try
{
    // ---- dispatch: 5,000 `true` tasks, 2 agents, one process per task
    var (port, server) = await StartServerAsync("dispatch");
    processes.Add(StartAgent(port, "dispatch", "a"));
    processes.Add(StartAgent(port, "dispatch", "b"));
    var plugin = await PluginAsync(port, "dispatch");
    await WarmUpAsync(plugin);
    if (args.Contains("--ceiling-only"))
    {
        await WarmUpAsync(plugin);
        goto Ceiling;
    }

    // The server and the agents are long-running services: a first job of 2,000 tasks warms them up before the measured one (after
    // 500, the runtime's background JIT was still recompiling hot methods for a third of an agent's CPU during the measured job).
    await WaitAsync(plugin, await plugin.SubmitJobAsync(Request("warm-up", Enumerable.Range(0, 2000)
        .Select(i => new TaskSpec($"w{i:0000}", [new Command("true", [])])).ToList())));
    var tasks = Enumerable.Range(0, 5000).Select(i => new TaskSpec($"t{i:0000}", [new Command("true", [])])).ToList();
    var cpuBefore = processes.Select(CpuMs).ToArray();
    var watch = Stopwatch.StartNew();
    var jobId = await plugin.SubmitJobAsync(Request("dispatch", tasks));
    await WaitAsync(plugin, jobId);
    var farmSeconds = watch.Elapsed.TotalSeconds;
    var farmRate = 5000 / farmSeconds;
    // CPU per task of the server and of both agents (tasks' own processes not included): steadier than rates on a shared machine.
    var cpu = processes.Select((p, i) => (CpuMs(p) - cpuBefore[i]) / 5000.0).ToArray();
    var xargs = Stopwatch.StartNew();
    using (var shell = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "seq 5000 | xargs -P 2 -I{} true"]))!)
    {
        await shell.WaitForExitAsync();
    }

    var xargsRate = 5000 / xargs.Elapsed.TotalSeconds;
    rows.Add(("dispatch, 5,000 `true` tasks, 2 agents", $"{farmRate:0} tasks/s ({farmSeconds:0.00} s)", "≥ 500 tasks/s"));
    rows.Add(("`seq 5000 | xargs -P 2 -I{} true` (same run)", $"{xargsRate:0} tasks/s ({xargs.Elapsed.TotalSeconds:0.00} s)", ""));
    rows.Add(("ReferenceFarm / xargs", $"{farmRate / xargsRate:0.00}×", "≥ 0.5×"));
    rows.Add(("CPU per task: server / agent a / agent b (tasks' processes not included)", $"{cpu[0]:0.00} / {cpu[1]:0.00} / {cpu[2]:0.00} ms", ""));
    if (args.Contains("--dispatch-only"))
    {
        foreach (var row in rows)
        {
            Console.WriteLine(row);
        }

        return 0;
    }

    var lqRate = await LocalQueueDispatchAsync();
    rows.Add(("LocalQueue, same 5,000 tasks, its 2 agents (same run)", $"{lqRate:0} tasks/s", ""));
    rows.Add(("ReferenceFarm / LocalQueue", $"{farmRate / lqRate:0.00}×", ""));

    Ceiling:
    // ---- the server's own ceiling: 2 simulated agents (lease + report in one call per task, no process started)
    var simJob = await plugin.SubmitJobAsync(Request("simulated", Enumerable.Range(0, 5000)
        .Select(i => new TaskSpec($"s{i:0000}", [new Command("true", [])], Host: "simulated")).ToList()));
    var dispatchToken = File.ReadAllText(Path.Combine(temp, "dispatch", "agent.token")).Trim();
    var serverCpuBefore = CpuMs(server);
    var simWatch = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, 2).Select(async n =>
    {
        using var channel = FarmChannel.Create(new Uri($"http://127.0.0.1:{port}"), null);
        var client = new Agents.AgentsClient(channel);
        var headers = FarmChannel.Bearer(dispatchToken);
        // As the agents do with short tasks: the reports of a few tasks and the next few leases in one call.
        var ask = new LeaseRequest { Agent = $"sim{n}", Hosts = { new Installation { Host = "simulated" } }, MaxTasks = CeilingBatch };
        var first = await client.LeaseAsync(ask, headers);
        var leases = first.HasTask ? new List<LeaseReply> { first } : [];
        while (leases.Count > 0)
        {
            var report = new ReportRequest { Agent = ask.Agent, Next = ask };
            report.Reports.Add(leases.Select(l => new CompleteRequest { JobId = l.JobId, TaskId = l.TaskId, Lease = l.Lease }));
            leases = [.. (await client.ReportAsync(report, headers)).Leases];
        }
    }));
    await WaitAsync(plugin, simJob);
    rows.Add(($"server ceiling: 5,000 tasks, 2 simulated agents ({CeilingBatch} reports and leases per call), no process per task",
        $"{5000 / simWatch.Elapsed.TotalSeconds:0} tasks/s (server CPU {(CpuMs(server) - serverCpuBefore) / 5000.0:0.00} ms per task)", ""));
    if (args.Contains("--ceiling-only"))
    {
        Console.WriteLine(rows[^1]);
        return 0;
    }

    // ---- latency from submit to the task's process start on an idle agent
    var latencies = new List<double>();
    for (var i = 0; i < 30; i++)
    {
        await Task.Delay(300);
        var submitted = DateTimeOffset.UtcNow;
        var id = await plugin.SubmitJobAsync(Request($"latency {i}", [new TaskSpec("t", [new Command("date", ["+%s%N"])])]));
        await WaitAsync(plugin, id);
        var text = (await plugin.ReadTaskLogAsync(id, "t", 0)).Text;
        var line = text.Split('\n').First(l => l.Length > 15 && l.All(char.IsAsciiDigit));
        var started = DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(line, CultureInfo.InvariantCulture) / 1_000_000);
        latencies.Add((started - submitted).TotalMilliseconds);
    }

    rows.Add(("submit → task process start, idle agent (median of 30)", $"{Median(latencies):0.0} ms (p90 {Percentile(latencies, 0.9):0.0} ms)", "< 20 ms"));
    await plugin.DisposeAsync();
    KillAll();

    // ---- big jobs: 10,000-task submit; GetJobsAsync and RSS with 100,000 queued tasks
    (port, server) = await StartServerAsync("big");
    plugin = await PluginAsync(port, "big");
    await WarmUpAsync(plugin);
    var submits = new List<double>();
    for (var j = 0; j < 10; j++)
    {
        var big = Enumerable.Range(0, 10_000).Select(i => new TaskSpec($"f{i:00000}", [new Command("true", [])], Host: "nowhere")).ToList();
        var request = Request($"big {j}", big);
        var submitWatch = Stopwatch.StartNew();
        await plugin.SubmitJobAsync(request);
        submits.Add(submitWatch.Elapsed.TotalMilliseconds);
    }

    rows.Add(("SubmitJobAsync, 10,000 tasks (median of 10)", $"{Median(submits):0} ms", "< 1,000 ms"));
    var listings = new List<double>();
    for (var i = 0; i < 21; i++)
    {
        var listWatch = Stopwatch.StartNew();
        var jobs = await plugin.GetJobsAsync();
        listings.Add(listWatch.Elapsed.TotalMilliseconds);
        if (jobs.Sum(j => j.Progress.TotalTasks) != 100_000)
        {
            throw new InvalidOperationException("expected 100,000 tasks");
        }
    }

    rows.Add(("GetJobsAsync, 10 jobs / 100,000 queued tasks (median of 21)", $"{Median(listings):0.0} ms", "< 50 ms"));
    var tasksWatch = Stopwatch.StartNew();
    var listed = await plugin.GetTasksAsync((await plugin.GetJobsAsync())[0].Id);
    rows.Add(("GetTasksAsync, one 10,000-task job", $"{tasksWatch.Elapsed.TotalMilliseconds:0} ms ({listed.Count} tasks)", ""));
    rows.Add(("server RSS with 100,000 queued tasks", $"{Rss(server.Id) / 1024.0 / 1024.0:0} MB", "< 300 MB"));

    // ---- 200 simulated agents heartbeating every second
    var agentToken = File.ReadAllText(Path.Combine(temp, "big", "agent.token")).Trim();
    var heartbeat = new List<double>();
    var gate = new Lock();
    var simulated = Enumerable.Range(0, 200).Select(async n =>
    {
        using var channel = FarmChannel.Create(new Uri($"http://127.0.0.1:{port}"), null);
        var client = new Agents.AgentsClient(channel);
        var headers = FarmChannel.Bearer(agentToken);
        await Task.Delay(n * 5);
        for (var beat = 0; beat < 15; beat++)
        {
            var request = new HeartbeatRequest { Agent = $"sim{n:000}" };
            request.Tasks.Add(new HeldTask { JobId = "rf-none", TaskId = "t", Lease = 1 });
            var beatWatch = Stopwatch.StartNew();
            await client.HeartbeatAsync(request, headers);
            if (beat > 1)
            {
                lock (gate)
                {
                    heartbeat.Add(beatWatch.Elapsed.TotalMilliseconds);
                }
            }

            await Task.Delay(Math.Max(0, 1000 - (int)beatWatch.ElapsedMilliseconds));
        }
    }).ToList();
    await Task.WhenAll(simulated);
    rows.Add(("200 simulated agents, heartbeat every 1 s: p99 latency", $"{Percentile(heartbeat, 0.99):0.0} ms (median {Median(heartbeat):0.0} ms, {heartbeat.Count} beats)", "< 50 ms"));
    await plugin.DisposeAsync();
}
finally
{
    KillAll();
    try
    {
        Directory.Delete(temp, recursive: true);
    }
    catch (IOException)
    {
    }
}

Console.WriteLine($"| figure | value | target |\n|---|---|---|");
foreach (var (figure, value, target) in rows)
{
    Console.WriteLine($"| {figure} | {value} | {target} |");
}

return 0;

void KillAll()
{
    foreach (var process in processes)
    {
        try
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
    }

    processes.Clear();
}

async Task<(int Port, Process Server)> StartServerAsync(string name)
{
    var port = FreePort();
    var info = new ProcessStartInfo("dotnet", [serverDll, "--listen", $"http://127.0.0.1:{port}", "--data", Path.Combine(temp, name)])
    {
        RedirectStandardOutput = true, RedirectStandardError = true,
    };
    var process = Process.Start(info)!;
    processes.Add(process);
    var ready = new TaskCompletionSource();
    process.OutputDataReceived += (_, e) =>
    {
        if (e.Data?.Contains("ready on", StringComparison.Ordinal) == true)
        {
            ready.TrySetResult();
        }
    };
    process.ErrorDataReceived += (_, _) => { };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
    return (port, process);
}

Process StartAgent(int port, string name, string agent)
{
    var info = new ProcessStartInfo("dotnet", [agentDll, "--server", $"http://127.0.0.1:{port}", "--token-file", Path.Combine(temp, name, "agent.token"),
        "--name", agent, "--hosts", "command", "--work", Path.Combine(temp, "work-" + agent)])
    {
        RedirectStandardOutput = true, RedirectStandardError = true,
    };
    // BENCH_PREFETCH: the agents' --prefetch (tasks leased ahead while tasks are short), to compare settings.
    if (Environment.GetEnvironmentVariable("BENCH_PREFETCH") is { Length: > 0 } prefetch)
    {
        info.ArgumentList.Add("--prefetch");
        info.ArgumentList.Add(prefetch);
    }

    var process = Process.Start(info)!;
    process.OutputDataReceived += (_, _) => { };
    process.ErrorDataReceived += (_, _) => { };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    return process;
}

async Task<BaseFarmPlugin> PluginAsync(int port, string name)
{
    var plugin = new ReferenceFarmPlugin();
    await plugin.InitializeAsync(new FarmPluginContext
    {
        PluginName = "ReferenceFarm", LoggerFactory = NullLoggerFactory.Instance, DataDirectory = Path.Combine(temp, "plugin-" + name),
        Settings = new Dictionary<string, string>
        {
            ["Address"] = $"http://127.0.0.1:{port}", ["Token"] = File.ReadAllText(Path.Combine(temp, name, "client.token")).Trim(),
        },
    });
    return plugin;
}

async Task WarmUpAsync(BaseFarmPlugin plugin)
{
    for (var i = 0; i < 20; i++)
    {
        await plugin.GetJobsAsync();
    }
}

async Task<double> LocalQueueDispatchAsync()
{
    // LocalQueue's agents are detached processes that exit after IdleSeconds without work.
    var agentAssembly = Path.Combine(root, "Plugins", "LocalQueue", "bin", configuration, "net10.0", "FarmPlugins.LocalQueue.dll");
    var localQueue = new FarmPlugins.LocalQueue.LocalQueuePlugin();
    await localQueue.InitializeAsync(new FarmPluginContext
    {
        PluginName = "LocalQueue", LoggerFactory = NullLoggerFactory.Instance, DataDirectory = Path.Combine(temp, "localqueue"),
        Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase) { ["Agents"] = "2", ["IdleSeconds"] = "5", ["AgentAssembly"] = agentAssembly },
    });
    await using (localQueue)
    {
        async Task<string> SubmitLocalAsync(string name, IReadOnlyList<TaskSpec> localTasks)
        {
            var context = new RenderContext(Guid.NewGuid(), RenderType.Disk, name);
            var folder = await localQueue.CreateTemporaryFolderAsync(context);
            return await localQueue.SubmitJobAsync(new JobRequest { Context = context, Name = name, Tasks = localTasks, TemporaryFolder = folder, MaxAttempts = 1 });
        }

        // Its agents start on the first submit: warm them up first, as the ReferenceFarm's agents are.
        await WaitAsync(localQueue, await SubmitLocalAsync("warm-up", [new TaskSpec("w", [new Command("true", [])])]));
        var localWatch = Stopwatch.StartNew();
        await WaitAsync(localQueue, await SubmitLocalAsync("dispatch", Enumerable.Range(0, 5000).Select(i => new TaskSpec($"t{i:0000}", [new Command("true", [])])).ToList()));
        return 5000 / localWatch.Elapsed.TotalSeconds;
    }
}

static JobRequest Request(string name, IReadOnlyList<TaskSpec> tasks)
{
    var id = Guid.NewGuid();
    return new JobRequest
    {
        Context = new RenderContext(id, RenderType.Disk, name), Name = name, Tasks = tasks, TemporaryFolder = $"refarm://{id:D}/", MaxAttempts = 1,
    };
}

static async Task WaitAsync(BaseFarmPlugin plugin, string jobId)
{
    var deadline = DateTime.UtcNow.AddMinutes(5);
    while (DateTime.UtcNow < deadline)
    {
        var job = await plugin.GetJobAsync(jobId);
        if (job.State.IsTerminal())
        {
            if (job.State != JobState.Completed)
            {
                throw new InvalidOperationException($"job {jobId} ended {job.State}");
            }

            return;
        }

        // Every 50 ms (at most 0.5 % of a 10 s run): polling every 5 ms made the bench's own GetJob calls (200/s) a third or more of
        // the server's CPU during a dispatch run.
        await Task.Delay(50);
    }

    throw new TimeoutException($"job {jobId} did not finish");
}

static double Median(List<double> values) => Percentile(values, 0.5);

static double Percentile(List<double> values, double p)
{
    var sorted = values.OrderBy(v => v).ToList();
    return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];
}

static double CpuMs(Process process)
{
    // utime + stime (fields 14 and 15 of /proc/PID/stat), in clock ticks of 10 ms.
    var stat = File.ReadAllText($"/proc/{process.Id}/stat");
    var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) * 10.0;
}

static long Rss(int pid)
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
    {
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
        {
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
    }

    return 0;
}

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

static string FindRoot()
{
    var dir = AppContext.BaseDirectory;
    while (dir is not null && !File.Exists(Path.Combine(dir, "FarmPlugins.sln")))
    {
        dir = Path.GetDirectoryName(dir);
    }

    return dir ?? throw new InvalidOperationException("FarmPlugins.sln not found");
}

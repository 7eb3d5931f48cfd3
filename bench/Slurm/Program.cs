using System.Diagnostics;
using System.Globalization;
using FarmApi;
using FarmPlugins.LocalQueue;
using FarmPlugins.ReferenceFarm;
using FarmPlugins.Slurm;
using FarmPlugins.Slurm.Tests;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

// The Slurm leg of the dispatch benchmark: the same 200 no-op tasks through Slurm (one array job), LocalQueue,
// ReferenceFarm and `xargs -P 2` in one run, plus submit-to-start latency. Prints a markdown table.
var TaskCount = args.Contains("--quick") ? 20 : 200;
var configuration = args.Contains("--debug") ? "Debug" : "Release";
var root = FindRoot();
var temp = new TempDir("slurm-bench");
var processes = new ProcessTracker();
var rows = new List<(string Figure, string Value)>();
var noOps = Enumerable.Range(0, TaskCount).Select(i => new TaskSpec($"t{i:000}", [new Command("/bin/true", [])])).ToList();
Console.Error.WriteLine($"load average before: {File.ReadAllText("/proc/loadavg").Trim()}");
SlurmCluster? cluster = null;
try
{
    // ---- Slurm: a private single-node cluster with the machine's real CPU count (one task per CPU, as xargs -P 2).
    cluster = await SlurmCluster.StartAsync(new SlurmClusterOptions { Cpus = Environment.ProcessorCount });
    rows.Add(("private cluster start (munged, slurmctld, slurmd → node idle)", $"{cluster.StartupTime.TotalSeconds:0.0} s"));
    var slurm = await SlurmAsync(cluster);
    await slurm.GetJobsAsync();

    var slurmRate = await DispatchAsync(slurm, "slurm", TimeSpan.FromMilliseconds(100));
    rows.Add(($"Slurm adapter: {TaskCount} no-op tasks, one array job, {Environment.ProcessorCount} CPUs", Rate(slurmRate)));

    // Slurm alone: the same array of /bin/true without the adapter's scripts, to show where the ceiling is.
    var raw = Stopwatch.StartNew();
    var (_, rawId, rawError) = await cluster.RunAsync("sbatch", "--parsable", $"--array=0-{TaskCount - 1}", "--output=/dev/null", "--wrap=/bin/true");
    rawId = rawId.Trim();
    if (rawId.Length == 0)
    {
        throw new InvalidOperationException("sbatch failed: " + rawError);
    }

    while ((await cluster.RunAsync("squeue", "-h", "-j", rawId, "-t", "PD,R,CG,CF")).Output.Trim().Length > 0)
    {
        await Task.Delay(100);
    }

    rows.Add(($"raw `sbatch --array=0-{TaskCount - 1} --wrap=/bin/true` (no adapter)", Rate((raw.Elapsed, TaskCount / raw.Elapsed.TotalSeconds))));

    var slurmLatency = await LatencyAsync(slurm, "slurm", 10);
    rows.Add(("Slurm: submit → task process start (median of 10)", $"{Median(slurmLatency):0} ms (min {slurmLatency.Min():0}, max {slurmLatency.Max():0})"));
    var rawLatency = new List<double>();
    for (var i = 0; i < 10; i++)
    {
        await Task.Delay(300);
        var output = temp.Combine($"raw-latency-{i}.out");
        var submitted = DateTimeOffset.UtcNow;
        var (_, id, _) = await cluster.RunAsync("sbatch", "--parsable", "--output=" + output, "--wrap=date +%s%N");
        while ((await cluster.RunAsync("squeue", "-h", "-j", id.Trim(), "-t", "PD,R,CG,CF")).Output.Trim().Length > 0)
        {
            await Task.Delay(20);
        }

        var started = DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(File.ReadAllText(output).Trim(), CultureInfo.InvariantCulture) / 1_000_000);
        rawLatency.Add((started - submitted).TotalMilliseconds);
    }

    rows.Add(("raw `sbatch --wrap='date +%s%N'`: submit → start (median of 10)", $"{Median(rawLatency):0} ms (min {rawLatency.Min():0}, max {rawLatency.Max():0})"));
    // A big job, held so nothing runs: what submitting and looking at it costs.
    var big = Enumerable.Range(0, 5000).Select(i => new TaskSpec($"f{i:0000}", [new Command("/bin/true", [])],
        i % 5 == 4 ? [$"f{i - 4:0000}", $"f{i - 3:0000}", $"f{i - 2:0000}", $"f{i - 1:0000}"] : null)).ToList();
    var held = await SlurmAsync(cluster, "--hold");
    var bigRequest = await RequestAsync(held, "big", big);
    var submitWatch = Stopwatch.StartNew();
    var bigId = await held.SubmitJobAsync(bigRequest);
    var bigSubmit = submitWatch.Elapsed;
    var bigJob = await held.GetJobAsync(bigId);
    rows.Add(("SubmitJobAsync, 5,000 tasks (4,000 tiles + 1,000 merges, held)",
        $"{bigSubmit.TotalMilliseconds:0} ms ({bigJob.Properties!["slurmJobIds"].Split(',').Length} array jobs)"));
    var looks = new List<double>();
    for (var i = 0; i < 5; i++)
    {
        var lookWatch = Stopwatch.StartNew();
        await held.GetJobAsync(bigId);
        looks.Add(lookWatch.Elapsed.TotalMilliseconds);
    }

    rows.Add(("GetJobAsync on it (median of 5; squeue lists 5,000 pending elements)", $"{Median(looks):0} ms"));
    await cluster.RunAsync("scancel", bigJob.Properties["slurmJobIds"].Split(','));
    await held.DisposeAsync();
    await slurm.DisposeAsync();
    await cluster.DisposeAsync();
    cluster = null;

    // ---- LocalQueue: 2 agents.
    var localQueue = new LocalQueuePlugin();
    await localQueue.InitializeAsync(new FarmPluginContext
    {
        PluginName = "LocalQueue", LoggerFactory = NullLoggerFactory.Instance, DataDirectory = temp.Combine("localqueue"),
        Settings = new Dictionary<string, string> { ["Agents"] = "2", ["IdleSeconds"] = "30", ["HeartbeatSeconds"] = "1", ["LeaseSeconds"] = "10" },
    });
    await DispatchAsync(localQueue, "localqueue warm-up", TimeSpan.FromMilliseconds(5), 10);
    var localRate = await DispatchAsync(localQueue, "localqueue", TimeSpan.FromMilliseconds(5));
    rows.Add(($"LocalQueue: the same {TaskCount} tasks, 2 agents", Rate(localRate)));
    var localLatency = await LatencyAsync(localQueue, "localqueue", 10);
    rows.Add(("LocalQueue: submit → task process start, idle agents (median of 10)", $"{Median(localLatency):0} ms"));
    await localQueue.DisposeAsync();
    foreach (var pid in LocalQueuePlugin.AgentProcessIds(temp.Combine("localqueue")))
    {
        ProcessTracker.Kill(pid);
    }

    // ---- ReferenceFarm: server + 2 agents of one slot.
    var serverDll = Path.Combine(root, "ReferenceFarm", "Server", "bin", configuration, "net10.0", "ReferenceFarm.Server.dll");
    var agentDll = Path.Combine(root, "ReferenceFarm", "Agent", "bin", configuration, "net10.0", "ReferenceFarm.Agent.dll");
    if (File.Exists(serverDll) && File.Exists(agentDll))
    {
        var port = await StartServerAsync(serverDll);
        StartAgent(agentDll, port, "a");
        StartAgent(agentDll, port, "b");
        var referenceFarm = new ReferenceFarmPlugin();
        await referenceFarm.InitializeAsync(new FarmPluginContext
        {
            PluginName = "ReferenceFarm", LoggerFactory = NullLoggerFactory.Instance, DataDirectory = temp.Combine("refarm-plugin"),
            Settings = new Dictionary<string, string>
            {
                ["Address"] = $"http://127.0.0.1:{port}", ["Token"] = File.ReadAllText(temp.Combine("refarm", "client.token")).Trim(),
            },
        });
        await DispatchAsync(referenceFarm, "referencefarm warm-up", TimeSpan.FromMilliseconds(5), 10);
        rows.Add(($"ReferenceFarm: the same {TaskCount} tasks, 2 agents × 1 slot", Rate(await DispatchAsync(referenceFarm, "referencefarm", TimeSpan.FromMilliseconds(5)))));
        await referenceFarm.DisposeAsync();
    }
    else
    {
        rows.Add(("ReferenceFarm", $"not measured: {serverDll} or the agent is not built"));
    }

    // ---- xargs
    var xargs = Stopwatch.StartNew();
    using (var shell = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"seq {TaskCount} | xargs -P 2 -I{{}} true"]))!)
    {
        await shell.WaitForExitAsync();
    }

    var xargsRate = TaskCount / xargs.Elapsed.TotalSeconds;
    rows.Add(($"`seq {TaskCount} \\| xargs -P 2 -I{{}} true`", Rate((xargs.Elapsed, xargsRate))));
    rows.Add(("Slurm adapter / xargs", $"{slurmRate.Rate / xargsRate:0.0000}×"));
    rows.Add(("Slurm adapter / LocalQueue", $"{slurmRate.Rate / localRate.Rate:0.000}×"));
}
finally
{
    if (cluster is not null)
    {
        await cluster.DisposeAsync();
    }

    processes.Dispose();
    temp.Dispose();
}

Console.Error.WriteLine($"load average after: {File.ReadAllText("/proc/loadavg").Trim()}");
Console.WriteLine($"Run of {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores.");
Console.WriteLine();
Console.WriteLine("| figure | value |");
Console.WriteLine("|---|---|");
foreach (var (figure, value) in rows)
{
    Console.WriteLine($"| {figure} | {value} |");
}

return 0;

async Task<SlurmPlugin> SlurmAsync(SlurmCluster slurmCluster, string? extraArgs = null)
{
    var plugin = new SlurmPlugin();
    await plugin.InitializeAsync(new FarmPluginContext
    {
        PluginName = "Slurm", LoggerFactory = NullLoggerFactory.Instance, DataDirectory = temp.Combine("slurm-workstation"),
        Settings = new Dictionary<string, string>
        {
            ["SharedRoot"] = temp.Combine("shared"), ["SlurmConf"] = slurmCluster.ConfFile, ["ExtraArgs"] = extraArgs ?? string.Empty,
        },
    });
    return plugin;
}

async Task<(TimeSpan Elapsed, double Rate)> DispatchAsync(BaseFarmPlugin plugin, string name, TimeSpan poll, int? limit = null)
{
    var count = limit ?? TaskCount;
    var watch = Stopwatch.StartNew();
    var jobId = await plugin.SubmitJobAsync(await RequestAsync(plugin, name, noOps.Take(count).ToList()));
    await WaitAsync(plugin, jobId, poll);
    Console.Error.WriteLine($"{name}: {count} tasks in {watch.Elapsed.TotalSeconds:0.00} s");
    return (watch.Elapsed, count / watch.Elapsed.TotalSeconds);
}

async Task<List<double>> LatencyAsync(BaseFarmPlugin plugin, string name, int runs)
{
    var latencies = new List<double>();
    for (var i = 0; i < runs; i++)
    {
        await Task.Delay(300);
        var request = await RequestAsync(plugin, $"{name} latency {i}", [new TaskSpec("t", [new Command("date", ["+%s%N"])])]);
        var submitted = DateTimeOffset.UtcNow;
        var id = await plugin.SubmitJobAsync(request);
        await WaitAsync(plugin, id, TimeSpan.FromMilliseconds(20));
        var text = (await plugin.ReadTaskLogAsync(id, "t", 0)).Text;
        var line = System.Text.RegularExpressions.Regex.Match(text, @"\b\d{16,}\b").Value;
        var started = DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(line, CultureInfo.InvariantCulture) / 1_000_000);
        latencies.Add((started - submitted).TotalMilliseconds);
    }

    return latencies;
}

async Task<JobRequest> RequestAsync(BaseFarmPlugin plugin, string name, IReadOnlyList<TaskSpec> tasks)
{
    var context = RenderContext.Create(name);
    var folder = plugin is ReferenceFarmPlugin ? $"refarm://{context.Id:D}/" : await plugin.CreateTemporaryFolderAsync(context);
    return new JobRequest { Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder, MaxAttempts = 1 };
}

static async Task WaitAsync(BaseFarmPlugin plugin, string jobId, TimeSpan poll)
{
    var deadline = DateTime.UtcNow.AddMinutes(10);
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

        await Task.Delay(poll);
    }

    throw new TimeoutException($"job {jobId} did not finish");
}

async Task<int> StartServerAsync(string serverDll)
{
    var port = FreePort.Get();
    var info = new ProcessStartInfo("dotnet", [serverDll, "--listen", $"http://127.0.0.1:{port}", "--data", temp.Combine("refarm")])
    {
        RedirectStandardOutput = true, RedirectStandardError = true,
    };
    var process = processes.Start(info);
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
    return port;
}

void StartAgent(string agentDll, int port, string agent)
{
    var info = new ProcessStartInfo("dotnet", [agentDll, "--server", $"http://127.0.0.1:{port}", "--token-file", temp.Combine("refarm", "agent.token"),
        "--name", agent, "--hosts", "command", "--work", temp.Combine("work-" + agent)])
    {
        RedirectStandardOutput = true, RedirectStandardError = true,
    };
    var process = processes.Start(info);
    process.OutputDataReceived += (_, _) => { };
    process.ErrorDataReceived += (_, _) => { };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
}

static string Rate((TimeSpan Elapsed, double Rate) result) => $"{result.Rate:0.0} tasks/s ({result.Elapsed.TotalSeconds:0.00} s)";

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted[(sorted.Count - 1) / 2];
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

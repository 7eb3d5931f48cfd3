using System.Diagnostics;
using System.Globalization;
using FarmApi;
using FarmPlugins.LocalQueue;
using Microsoft.Extensions.Logging.Abstractions;

// LocalQueue figures (issue 3) and farm CLI figures (issue 5). Every farm this starts lives in a temporary data
// directory; its agents are killed by pid at the end.
var which = args.Length > 0 ? args[0] : "all";
var repo = FindRepository();
var results = new List<string>();

if (which is "all" or "throughput") await Throughput();
if (which is "all" or "latency") await Latency();
if (which is "all" or "staging") await Staging();
if (which is "all" or "idle") await Idle();
if (which is "all" or "cli") await Cli();
if (which is "blob") await Blob(args[1]);

Console.WriteLine();
Console.WriteLine("| figure | value |");
Console.WriteLine("|---|---|");
foreach (var line in results) Console.WriteLine(line);
return 0;

async Task Throughput()
{
    var n = int.TryParse(Environment.GetEnvironmentVariable("BENCH_TASKS"), out var tasksWanted) ? tasksWanted : 2000;
    var xargs = Stopwatch.StartNew();
    await Run("/bin/sh", "-c", $"seq {n} | xargs -P 2 -I{{}} true");
    xargs.Stop();

    await using var farm = await Farm.StartAsync(new() { ["Agents"] = Environment.GetEnvironmentVariable("BENCH_AGENTS") ?? "2" });
    var plugin = farm.Plugin;

    async Task<(double Seconds, JobState State)> OneJob(string name)
    {
        var context = RenderContext.Create(name);
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var tasks = Enumerable.Range(0, n).Select(i => new TaskSpec($"t{i}", [Command.Of("true")])).ToList();
        var watch = Stopwatch.StartNew();
        var id = await plugin.SubmitJobAsync(new JobRequest { Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder, MaxAttempts = 1 });
        var job = await WaitAsync(plugin, id, TimeSpan.FromMinutes(10));
        return (watch.Elapsed.TotalSeconds, job.State);
    }

    (long Own, long Children) AgentTicks()
    {
        long own = 0, children = 0;
        foreach (var pid in LocalQueuePlugin.AgentProcessIds(farm.DataDirectory))
        {
            own += CpuTicks(pid);
            children += CpuTicks(pid, children: true);
        }

        return (own, children);
    }

    // 1. The first job starts the agents on demand (their start-up is inside the time), as a user's first job does.
    var cold = await OneJob("throughput");
    var afterCold = AgentTicks();
    // 2. The same job again with the agents up, then xargs again: the steady state, and the agents' CPU per task
    //    without their start-up.
    var warm = await OneJob("throughput-warm");
    var afterWarm = AgentTicks();
    var xargs2 = Stopwatch.StartNew();
    await Run("/bin/sh", "-c", $"seq {n} | xargs -P 2 -I{{}} true");
    xargs2.Stop();

    results.Add(F($"| CPU per task, agents up (second job): agents' own / the task processes' | {(afterWarm.Own - afterCold.Own) * 10.0 / n * 1000:0} µs / {(afterWarm.Children - afterCold.Children) * 10.0 / n * 1000:0} µs |"));
    results.Add(F($"| CPU per task, first job (agents' start-up included): agents' own / the task processes' | {afterCold.Own * 10.0 / n * 1000:0} µs / {afterCold.Children * 10.0 / n * 1000:0} µs |"));
    var xr = n / xargs.Elapsed.TotalSeconds;
    var xr2 = n / xargs2.Elapsed.TotalSeconds;
    results.Add(F($"| throughput: {n} `true` tasks, 2 agents, one process per task, SQLite WAL synchronous=NORMAL: first job, agents started on demand | LocalQueue {n / cold.Seconds:0} tasks/s ({cold.Seconds:0.0} s, {cold.State}) |"));
    results.Add(F($"| `seq {n} \\| xargs -P 2 -I{{}} true`, just before | {xr:0} tasks/s ({xargs.Elapsed.TotalSeconds:0.0} s) |"));
    results.Add(F($"| LocalQueue / xargs, first job (target ≥ 0.5×) | {n / cold.Seconds / xr:0.00}× |"));
    results.Add(F($"| the same job again, agents up | LocalQueue {n / warm.Seconds:0} tasks/s ({warm.Seconds:0.0} s, {warm.State}); xargs just after: {xr2:0} tasks/s |"));
    results.Add(F($"| LocalQueue / xargs, agents up (against the mean of both xargs runs) | {n / warm.Seconds / ((xr + xr2) / 2):0.00}× |"));
}

async Task Latency()
{
    await using var farm = await Farm.StartAsync(new() { ["Agents"] = "2" });
    var plugin = farm.Plugin;
    // Warm the agents up.
    await SubmitAndWait(plugin, "warm", [new TaskSpec("w", [Command.Of("true")])]);
    var samples = new List<double>();
    for (var i = 0; i < 30; i++)
    {
        var stamp = Path.Combine(farm.DataDirectory, $"stamp{i}");
        var context = RenderContext.Create("latency");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var request = new JobRequest
        {
            Context = context, Name = "latency", TemporaryFolder = folder, MaxAttempts = 1,
            Tasks = [new TaskSpec("t", [Command.Of("/bin/sh", "-c", $"date +%s%N > {stamp}")])],
        };
        var id = await plugin.SubmitJobAsync(request);
        var returned = (DateTimeOffset.UtcNow.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;
        await WaitAsync(plugin, id, TimeSpan.FromMinutes(1));
        var started = long.Parse(File.ReadAllText(stamp).Trim(), CultureInfo.InvariantCulture);
        samples.Add((started - returned) / 1e6);
        await Task.Delay(300);
    }

    samples.Sort();
    results.Add(F($"| submit returned → first task process started, agents up (median of 30; the task runs `date +%s%N`; target < 50 ms) | {samples[15]:0.0} ms (p90 {samples[27]:0.0} ms) |"));
}

async Task Staging()
{
    var tree = Directory.CreateTempSubdirectory("lqbench-tree").FullName;
    // Nothing is deleted until every round is measured: this machine's ext4 has no journal, and without one every new
    // inode (a file, a folder) is checked against those deleted in the last minute or more, so deleting a round's
    // 2,000-3,000 files made the next round's creations (`cp -r`'s as well as the staging's folders) several times
    // dearer, by an amount that depended on what was deleted when.
    var cleanUp = new List<string>();
    try
    {
        // 1,000 files, 500 MB: 50 files of 9 MB and 950 of ~55 KB.
        var random = new Random(7);
        for (var i = 0; i < 1000; i++)
        {
            var size = i < 50 ? 9 * 1024 * 1024 : 55 * 1024;
            var bytes = new byte[size];
            random.NextBytes(bytes);
            var dir = Path.Combine(tree, $"d{i % 20}");
            Directory.CreateDirectory(dir);
            await File.WriteAllBytesAsync(Path.Combine(dir, $"f{i}.bin"), bytes);
        }

        var total = Directory.GetFiles(tree, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        await Run("sync");
        var files = Directory.GetFiles(tree, "*", SearchOption.AllDirectories)
            .Select(f => new RenderFile(f, Path.GetRelativePath(tree, f))).ToList();
        // Rounds, in alternating order (cp first, then staging first): this VM's disk and CPU speed drift, and each
        // round's first staging starts from an empty queue (new blob store, new hash cache).
        var rounds = int.TryParse(Environment.GetEnvironmentVariable("BENCH_ROUNDS"), out var wanted) ? wanted : 3;
        var ratios = new List<double>();
        var seconds = new List<double>();
        var withHashing = new List<double>();

        for (var round = 0; round < rounds; round++)
        {
            await using var farm = await Farm.StartAsync(new() { ["Agents"] = "1" });
            farm.KeepFiles = true;
            cleanUp.Add(Path.GetDirectoryName(farm.DataDirectory)!);
            // Warm-up: three other files (one large) staged once, so the staging code's first-call JIT is not in the
            // figure (./farm runs the plug-in precompiled; this bench links it and JIT-compiles it).
            var warm = Directory.CreateTempSubdirectory("lqbench-warm").FullName;
            await File.WriteAllBytesAsync(Path.Combine(warm, "big.bin"), new byte[3 << 20]);
            await File.WriteAllTextAsync(Path.Combine(warm, "a.txt"), "a");
            await File.WriteAllTextAsync(Path.Combine(warm, "b.txt"), "b");
            // Twice, so the second staging's path (hash cache hits, links) is compiled before it is measured too.
            RenderFile[] warmFiles = [.. Directory.GetFiles(warm).Select(f => new RenderFile(f, Path.GetFileName(f)))];
            await Stage(farm.Plugin, warmFiles);
            await Stage(farm.Plugin, []); // its background hashing ends here
            await Stage(farm.Plugin, warmFiles);
            cleanUp.Add(warm);

            async Task<double> CopyTree()
            {
                var cpTarget = Path.Combine(Path.GetTempPath(), "lqbench-cp-" + Guid.NewGuid().ToString("N"));
                var cp = Stopwatch.StartNew();
                await Run("cp", "-r", tree, cpTarget);
                cp.Stop();
                cleanUp.Add(cpTarget);
                return cp.Elapsed.TotalSeconds;
            }

            // The first staging returns when the files are in place; the plug-in hashes the new ones afterwards, in
            // the background. That hashing is timed on its own (a staging of nothing waits for it) and ends before the
            // next thing is measured, so it never runs under `cp -r` or the second staging.
            double cpSeconds, first, hashing;
            if (round % 2 == 0)
            {
                cpSeconds = await CopyTree();
                first = (await Stage(farm.Plugin, files)).TotalSeconds;
                hashing = (await Stage(farm.Plugin, [])).TotalSeconds;
            }
            else
            {
                first = (await Stage(farm.Plugin, files)).TotalSeconds;
                hashing = (await Stage(farm.Plugin, [])).TotalSeconds;
                cpSeconds = await CopyTree();
            }

            var second = (await Stage(farm.Plugin, files)).TotalSeconds;
            ratios.Add(first / cpSeconds);
            seconds.Add(second / first);
            withHashing.Add((first + hashing) / cpSeconds);
            results.Add(F($"| round {round + 1}: staging {files.Count} files, {total / 1e6:0} MB into a job folder (first time: the files in place) / `cp -r` of the same tree | {first:0.00} s / {cpSeconds:0.00} s = {first / cpSeconds:0.00} |"));
            results.Add(F($"| round {round + 1}: the hashing of the new files after the staging returned (background: hash, blob, hash cache) | {hashing:0.00} s; staging + hashing = {(first + hashing) / cpSeconds:0.00}× `cp -r` |"));
            results.Add(F($"| round {round + 1}: the same tree into a second job (hash cache + links) | {second:0.000} s ({100 * second / first:0.0}% of the first) |"));
        }

        results.Add(F($"| staging / cp -r, median of {rounds} rounds (target ≤ 1.2) | {Median(ratios):0.00} |"));
        results.Add(F($"| staging and its background hashing / cp -r, median of {rounds} rounds | {Median(withHashing):0.00} |"));
        results.Add(F($"| second staging / first, median of {rounds} rounds (target < 5%) | {100 * Median(seconds):0.0}% |"));
    }
    finally
    {
        foreach (var path in cleanUp)
        {
            try { Directory.Delete(path, true); } catch (IOException) { }
        }

        Directory.Delete(tree, true);
    }
}

async Task<TimeSpan> Stage(BaseFarmPlugin plugin, IReadOnlyList<RenderFile> files)
{
    var context = RenderContext.Create("staging");
    var folder = await plugin.CreateTemporaryFolderAsync(context);
    var watch = Stopwatch.StartNew();
    await plugin.CopyRenderFilesAsync(context, folder, files);
    return watch.Elapsed;
}

async Task Idle()
{
    await using var farm = await Farm.StartAsync(new() { ["Agents"] = "1", ["IdleSeconds"] = "120" });
    await SubmitAndWait(farm.Plugin, "idle", [new TaskSpec("t", [Command.Of("true")])]);
    // Let the agent settle (tiered JIT recompiles its hot paths in the first seconds), then measure.
    await Task.Delay(TimeSpan.FromSeconds(15));
    var pid = LocalQueuePlugin.AgentProcessIds(farm.DataDirectory).Single();
    var before = CpuTicks(pid);
    var watch = Stopwatch.StartNew();
    await Task.Delay(TimeSpan.FromSeconds(10));
    var used = (CpuTicks(pid) - before) / 100.0;
    results.Add(F($"| an idle agent's CPU over {watch.Elapsed.TotalSeconds:0} s (utime+stime from /proc; target < 1%) | {100 * used / watch.Elapsed.TotalSeconds:0.00}% ({used * 1000:0} ms) |"));
}

async Task Cli()
{
    var farmScript = Path.Combine(repo, "farm");
    await using var farm = await Farm.StartAsync(new() { ["Agents"] = "2" });
    for (var i = 0; i < 1000; i++)
    {
        var context = RenderContext.Create($"cli{i}");
        var folder = await farm.Plugin.CreateTemporaryFolderAsync(context);
        await farm.Plugin.SubmitJobAsync(new JobRequest { Context = context, Name = $"job{i}", TemporaryFolder = folder, Tasks = [new TaskSpec("t", [Command.Of("true")])] });
    }

    var env = new Dictionary<string, string> { ["FARM_DATA"] = Path.GetDirectoryName(farm.DataDirectory)! };
    await Run2(farmScript, env, "plugins"); // brings the build up to date first
    var jobs = new List<double>();
    var status = new List<double>();
    for (var i = 0; i < 11; i++)
    {
        var watch = Stopwatch.StartNew();
        await Run2(farmScript, env, "jobs");
        jobs.Add(watch.Elapsed.TotalMilliseconds);
        watch.Restart();
        await Run2(farmScript, env, "status", "lq-500");
        status.Add(watch.Elapsed.TotalMilliseconds);
    }

    jobs.Sort();
    status.Sort();
    results.Add(F($"| `./farm jobs`, 1,000 jobs queued, build up to date (median of 11; target < 400 ms) | {jobs[5]:0} ms |"));
    results.Add(F($"| `./farm status lq-500`, same queue (median of 11; target < 400 ms) | {status[5]:0} ms |"));
}

static async Task Blob(string tree)
{
    var files = Directory.GetFiles(tree, "*", SearchOption.AllDirectories);
    var w = Stopwatch.StartNew();
    foreach (var f in files) await FarmApi.Hashing.ContentHash.ComputeFileAsync(f);
    Console.WriteLine($"hash only: {w.Elapsed.TotalSeconds:0.00} s");
    var store = new FarmApi.Hashing.FileBlobStore(Directory.CreateTempSubdirectory("blobbench").FullName);
    w.Restart();
    foreach (var f in files) await store.AddFileAsync(f);
    Console.WriteLine($"add (hash while copying): {w.Elapsed.TotalSeconds:0.00} s");
    var dest = Directory.CreateTempSubdirectory("blobdest").FullName;
    w.Restart();
    foreach (var f in files) await store.LinkOrCopyAsync(FarmApi.Hashing.ContentHash.Compute(File.ReadAllBytes(f)), Path.Combine(dest, Path.GetFileName(f)));
    Console.WriteLine($"rehash + link: {w.Elapsed.TotalSeconds:0.00} s");
}

static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
}

static long CpuTicks(int pid, bool children = false)
{
    var stat = File.ReadAllText($"/proc/{pid}/stat");
    var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    var first = children ? 13 : 11;
    return long.Parse(fields[first], CultureInfo.InvariantCulture) + long.Parse(fields[first + 1], CultureInfo.InvariantCulture);
}

static async Task SubmitAndWait(BaseFarmPlugin plugin, string name, IReadOnlyList<TaskSpec> tasks)
{
    var context = RenderContext.Create(name);
    var folder = await plugin.CreateTemporaryFolderAsync(context);
    var id = await plugin.SubmitJobAsync(new JobRequest { Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder });
    await WaitAsync(plugin, id, TimeSpan.FromMinutes(2));
}

static async Task<Job> WaitAsync(BaseFarmPlugin plugin, string id, TimeSpan timeout)
{
    var deadline = DateTime.UtcNow + timeout;
    while (true)
    {
        var job = await plugin.GetJobAsync(id);
        if (job.State.IsTerminal()) return job;
        if (DateTime.UtcNow > deadline) throw new TimeoutException($"job {id} still {job.State}");
        // 20 ms: fine enough for runs of seconds, and no drain on the two cores the agents use.
        await Task.Delay(20);
    }
}

static Task Run(string file, params string[] arguments) => RunWith(file, null, arguments);

static Task Run2(string file, Dictionary<string, string> env, params string[] arguments) => RunWith(file, env, arguments);

static async Task RunWith(string file, Dictionary<string, string>? env, string[] arguments)
{
    var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in arguments) info.ArgumentList.Add(a);
    foreach (var (k, v) in env ?? []) info.Environment[k] = v;
    using var process = Process.Start(info)!;
    var output = process.StandardOutput.ReadToEndAsync();
    var error = process.StandardError.ReadToEndAsync();
    await process.WaitForExitAsync();
    await output;
    if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited {process.ExitCode}: {await error}");
}

static string FindRepository() => Farm.FindRepository();

/// <summary>A LocalQueue in a temporary data directory with default timings; its agents are killed at the end.</summary>
internal sealed partial class Farm
{
    public static string FindRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
            if (File.Exists(Path.Combine(dir.FullName, "FarmPlugins.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException("run from a FarmPlugins checkout");
    }
}

internal sealed partial class Farm : IAsyncDisposable
{
    private Farm(BaseFarmPlugin plugin, string dataDirectory)
    {
        Plugin = plugin;
        DataDirectory = dataDirectory;
    }

    public BaseFarmPlugin Plugin { get; }

    public string DataDirectory { get; }

    public static async Task<Farm> StartAsync(Dictionary<string, string> settings)
    {
        // <root>/LocalQueue, so that FARM_DATA=<root> finds the same queue from ./farm.
        var data = Path.Combine(Directory.CreateTempSubdirectory("lqbench").FullName, "LocalQueue");
        Directory.CreateDirectory(data);
        // Agents as ./farm installs them (Release, ReadyToRun) when that copy is there; BENCH_AGENT_ASSEMBLY overrides.
        settings = new Dictionary<string, string>(settings);
        var installed = Path.Combine(FindRepository(), "out", "resources", "Plugins", "FarmPlugins.LocalQueue", "FarmPlugins.LocalQueue.dll");
        var agent = Environment.GetEnvironmentVariable("BENCH_AGENT_ASSEMBLY")
            ?? (File.Exists(Path.Combine(Path.GetDirectoryName(installed)!, ".readytorun")) ? installed : null);
        if (agent is not null && !settings.ContainsKey("AgentAssembly"))
        {
            settings["AgentAssembly"] = agent;
            Console.Error.WriteLine($"agents: {agent}");
        }

        var plugin = new LocalQueuePlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = settings,
            DataDirectory = data,
        });
        return new Farm(plugin, data);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pid in LocalQueuePlugin.AgentProcessIds(DataDirectory))
        {
            try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
        }

        await Plugin.DisposeAsync();
        if (!KeepFiles)
        {
            try { Directory.Delete(Path.GetDirectoryName(DataDirectory)!, true); } catch (IOException) { }
        }
    }

    /// <summary>Leave the data directory for the caller to delete later (see the staging figures).</summary>
    public bool KeepFiles { get; set; }
}

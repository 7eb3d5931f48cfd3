using System.Diagnostics;
using System.Globalization;
using FarmApi;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.PovRay;

namespace FarmPlugins.Bench.Hosts;

/// <summary>The host-side figures: a 24-frame animation on 2 agents against the ideal, and one large frame whole vs 2x2 tiles.</summary>
public static class Bench
{
    public static async Task<int> RunAsync(Func<int, string, Task<BaseFarmPlugin>>? createFarm, string farmName, string[] args, int rounds = 3)
    {
        var repo = RepoRoot;
        var scene = Path.Combine(repo, "samples", "scenes", "demo.pov");
        var tools = FarmTools.Locate() ?? Path.Combine(repo, "out", "resources", "Tools", "FarmTools", FarmTools.ExecutableName);
        var installations = new Dictionary<string, InstallationMetadata>
        {
            ["povray"] = new("povray", "3.7", "povray"),
            [FarmTools.HostName] = new(FarmTools.HostName, "2.0", tools),
        };
        var animationSize = args.Length > 0 ? ImageSize.Parse(args[0]) : new ImageSize(640, 360);
        var largeSize = args.Length > 1 ? ImageSize.Parse(args[1]) : new ImageSize(2560, 1440);
        var work = Path.Combine(Path.GetTempPath(), "farm-bench-hosts-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(work);
        var adapter = new PovRayHostAdapter();
        var rows = new List<string>();
        var loadBefore = ReadLoad();
        try
        {
            // 1. The 24-frame animation: single-task times, a plain 2-worker peer, then the farm with 2 agents.
            var animation = new RenderSettings { Frames = FrameList.Parse("1-24"), Size = animationSize, Threads = 1 };
            var plan = await adapter.PlanAsync(scene, animation);
            var tasks = plan.CreateTasks(installations);
            var single = await RunDirectAsync(plan, tasks, Path.Combine(work, "single"), workers: 1);
            var peer = await RunDirectAsync(plan, tasks, Path.Combine(work, "peer"), workers: 2);
            var ideal = single.TaskSeconds.Sum() / 2;
            rows.Add(Row($"24 frames {animationSize}, +WT1: sum of single-task times", single.TaskSeconds.Sum(), "s"));
            rows.Add(Row("ideal on 2 agents (sum / 2)", ideal, "s"));
            rows.Add(Row("peer: the same tasks on 2 plain workers (no farm)", peer.Makespan, "s", $"{peer.Makespan / ideal:0.00}× ideal"));
            if (createFarm is not null)
            {
                var farm = await RunOnFarmAsync(createFarm, 2, Path.Combine(work, "farm2"), adapter, scene, animation);
                rows.Add(Row($"{farmName}, 2 agents: makespan (submit → completed)", farm, "s", $"**{farm / ideal:0.00}× ideal** (target ≤ 1.15×)"));
            }

            // 2. One large frame, supersampled everywhere (+A0.0 +R3) as a production frame is expensive per pixel:
            //    whole on one agent vs 2x2 tiles on two. This VM's CPU speed drifts by up to half from minute to
            //    minute, so the pair is measured in several rounds in alternating order (whole-tiled, tiled-whole, ...)
            //    and each round's ratio is reported with their median.
            adapter = new PovRayHostAdapter(new PovRayOptions { AntialiasThreshold = 0, AntialiasDepth = 3 });
            var whole = new RenderSettings { Size = largeSize, Antialias = true, Threads = 1 };
            var tiled = whole with { Tiles = new TileGrid(2, 2) };
            var wholePlan = await adapter.PlanAsync(scene, whole);
            var tiledPlan = await adapter.PlanAsync(scene, tiled);
            var peerRatios = new List<double>();
            var farmRatios = new List<double>();
            List<double>? tileTimes = null;
            for (var round = 0; round < rounds; round++)
            {
                var tiledFirst = round % 2 == 1;
                async Task<(double Whole, double Tiled)> Pair(Func<Task<double>> runWhole, Func<Task<double>> runTiled)
                {
                    if (tiledFirst)
                    {
                        var t = await runTiled();
                        return (await runWhole(), t);
                    }

                    var w = await runWhole();
                    return (w, await runTiled());
                }

                var peerPair = await Pair(
                    async () => (await RunDirectAsync(wholePlan, wholePlan.CreateTasks(installations), Path.Combine(work, $"wholepeer{round}"), workers: 1)).Makespan,
                    async () =>
                    {
                        var run = await RunDirectAsync(tiledPlan, tiledPlan.CreateTasks(installations), Path.Combine(work, $"tiledpeer{round}"), workers: 2);
                        tileTimes ??= run.TaskSeconds;
                        return run.Makespan;
                    });
                peerRatios.Add(peerPair.Whole / peerPair.Tiled);
                rows.Add(Row($"round {round + 1}: one frame {largeSize}, +A0.0 +R3 +WT1, whole / 2x2 tiles + merge, 2 plain workers", 0, "",
                    string.Create(CultureInfo.InvariantCulture, $"{peerPair.Whole:0.00} s / {peerPair.Tiled:0.00} s = {peerPair.Whole / peerPair.Tiled:0.00}× faster")));
                if (createFarm is not null)
                {
                    var farmPair = await Pair(
                        () => RunOnFarmAsync(createFarm, 1, Path.Combine(work, $"whole{round}"), adapter, scene, whole),
                        () => RunOnFarmAsync(createFarm, 2, Path.Combine(work, $"tiled{round}"), adapter, scene, tiled));
                    farmRatios.Add(farmPair.Whole / farmPair.Tiled);
                    rows.Add(Row($"round {round + 1}: whole on {farmName} 1 agent / 2x2 tiles + merge on {farmName} 2 agents", 0, "",
                        string.Create(CultureInfo.InvariantCulture, $"{farmPair.Whole:0.00} s / {farmPair.Tiled:0.00} s = {farmPair.Whole / farmPair.Tiled:0.00}× faster")));
                }
            }

            rows.Add(Row($"2x2 tiles on 2 plain workers: median speed-up over {rounds} rounds", 0, "", $"{Median(peerRatios):0.00}×"));
            if (farmRatios.Count > 0)
            {
                rows.Add(Row($"2x2 tiles on {farmName} 2 agents: median speed-up over {rounds} rounds", 0, "", $"**{Median(farmRatios):0.00}× faster** (target ≥ 1.6×)"));
            }

            rows.Add(Row("tile task times (first peer run)", 0, "", string.Join(", ", tileTimes!.Take(4).Select(s => s.ToString("0.00", CultureInfo.InvariantCulture) + " s")) + $"; merge {tileTimes![^1]:0.00} s"));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }

        Console.WriteLine($"load average before / after: {loadBefore} / {ReadLoad()} (2 cores)");
        Console.WriteLine();
        Console.WriteLine("| figure | value | note |");
        Console.WriteLine("|---|---|---|");
        rows.ForEach(Console.WriteLine);
        return 0;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string ReadLoad() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string Row(string figure, double value, string unit, string note = "") =>
        string.Create(CultureInfo.InvariantCulture, $"| {figure} | {(unit.Length == 0 ? "" : $"{value:0.00} {unit}")} | {note} |");

    private static async Task<double> RunOnFarmAsync(Func<int, string, Task<BaseFarmPlugin>> createFarm, int agents, string data, IHostAdapter adapter, string scene, RenderSettings settings)
    {
        Directory.CreateDirectory(data);
        var plugin = await createFarm(agents, data);
        try
        {
            var flow = new RenderFlow(plugin);
            var submission = await flow.SubmitAsync(new RenderJob { Adapter = adapter, ScenePath = scene, Settings = settings, PollInterval = TimeSpan.FromMilliseconds(50) });
            var job = await flow.WaitAsync(submission.JobId, pollInterval: TimeSpan.FromMilliseconds(50));
            if (job.State != JobState.Completed)
            {
                throw new InvalidOperationException($"bench job {job.Id} ended {job.State}");
            }

            // Where the time went, task by task (to stderr: the table on stdout stays the figures).
            foreach (var task in await plugin.GetTasksAsync(job.Id))
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {job.Id} {task.Id,-12} {task.Node,-28} +{(task.StartedAt - job.SubmittedAt)?.TotalSeconds:0.00} s → +{(task.CompletedAt - job.SubmittedAt)?.TotalSeconds:0.00} s"));
            }

            return ((job.CompletedAt ?? DateTimeOffset.UtcNow) - job.SubmittedAt).TotalSeconds;
        }
        finally
        {
            await plugin.DisposeAsync();
        }
    }

    /// <summary>Runs the tasks with plain processes (no farm) on N workers, dependencies respected; returns each task's time.</summary>
    private static async Task<(double Makespan, List<double> TaskSeconds)> RunDirectAsync(RenderPlan plan, IReadOnlyList<TaskSpec> tasks, string folder, int workers)
    {
        Directory.CreateDirectory(folder);
        foreach (var file in plan.Files)
        {
            var target = JobPaths.ResolveInside(folder, file.RelativePath);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file.LocalPath, target, overwrite: true);
        }

        var seconds = new double[tasks.Count];
        var done = new HashSet<string>();
        var gate = new object();
        var watch = Stopwatch.StartNew();
        var pending = Enumerable.Range(0, tasks.Count).ToList();
        var running = new List<Task>();
        while (pending.Count > 0 || running.Count > 0)
        {
            lock (gate)
            {
                while (running.Count < workers && pending.FirstOrDefault(i => (tasks[i].DependsOn ?? []).All(done.Contains), -1) is var next and >= 0)
                {
                    pending.Remove(next);
                    running.Add(Task.Run(async () =>
                    {
                        var taskWatch = Stopwatch.StartNew();
                        foreach (var command in tasks[next].Commands)
                        {
                            await RunAsync(command, folder);
                        }

                        seconds[next] = taskWatch.Elapsed.TotalSeconds;
                        lock (gate)
                        {
                            done.Add(tasks[next].Id);
                        }
                    }));
                }
            }

            var finished = await Task.WhenAny(running);
            await finished;
            running.Remove(finished);
        }

        return (watch.Elapsed.TotalSeconds, [.. seconds]);
    }

    private static async Task RunAsync(Command command, string folder)
    {
        var info = new ProcessStartInfo(command.Executable) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in command.Arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command.Executable} exited {process.ExitCode}: {await stderr}");
        }

        await stdout;
    }

    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FarmPlugins.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("FarmPlugins.sln not found.");
    }
}

// Figures for plug-in discovery (issue 2): list 20 plug-ins on one resources path with FarmPluginManager in-process
// (median of N, each with a new manager: discovery is cached per manager), and the wall time of `./farm plugins`
// with an up-to-date build (median of M). Usage:
//   dotnet run -c Release --project bench/PluginListing -- [--plugins 20] [--runs 21] [--cli-runs 11] [--repo PATH] [--no-cli]
using System.Diagnostics;
using FarmApi.Hosting;
using FarmPlugins.Bench.PluginListing;

var count = 20;
var runs = 21;
var cliRuns = 11;
var cli = true;
string? repo = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--plugins": count = int.Parse(args[++i]); break;
        case "--runs": runs = int.Parse(args[++i]); break;
        case "--cli-runs": cliRuns = int.Parse(args[++i]); break;
        case "--repo": repo = args[++i]; break;
        case "--no-cli": cli = false; break;
        default:
            Console.Error.WriteLine($"unknown argument {args[i]}");
            return 2;
    }
}

var resources = Path.Combine(Path.GetTempPath(), "farm-bench-listing-" + Guid.NewGuid().ToString("N")[..8]);
try
{
    BenchPlugins.Write(resources, count);

    // 1. In-process: a new manager per run, so every run reads every assembly's metadata again.
    var times = new List<double>();
    IReadOnlyList<FarmPluginInfo> listed = [];
    for (var run = 0; run <= runs; run++)
    {
        var options = new FarmPluginManagerOptions { UseEnvironment = false };
        options.ResourcePaths.Add(resources);
        await using var manager = new FarmPluginManager(options);
        var watch = Stopwatch.StartNew();
        listed = manager.GetPlugins();
        watch.Stop();
        times.Add(watch.Elapsed.TotalMilliseconds);
    }

    var available = listed.Count(p => p.Status == FarmPluginStatus.Available);
    if (available != count)
    {
        Console.Error.WriteLine($"expected {count} available plug-ins, listed {available}: {string.Join("; ", listed.Select(p => $"{p.Name} {p.Status} {p.Error}"))}");
        return 1;
    }

    // They are real plug-ins: one loads (constructed and initialized in its own context).
    var loadOptions = new FarmPluginManagerOptions { Environment = new Dictionary<string, string> { ["FARM_DATA"] = Path.Combine(resources, "data") } };
    loadOptions.ResourcePaths.Add(resources);
    await using (var loader = new FarmPluginManager(loadOptions))
    {
        await using var loaded = await loader.LoadAsync("Bench Farm 01");
    }

    var cold = times[0];
    var warm = times.Skip(1).ToList();
    Console.WriteLine($"| in-process listing of {count} plug-ins (new FarmPluginManager, GetPlugins), median of {runs} | {Median(warm):0.0} ms (p90 {Percentile(warm, 0.9):0.0} ms, max {warm.Max():0.0} ms) | < 300 ms |");
    Console.WriteLine($"| same, first call in the process (JIT included) | {cold:0.0} ms | |");

    // 2. `./farm plugins`: one warm-up call (it builds when a source is newer than the last build), then timed calls.
    if (cli)
    {
        repo ??= FindRepo();
        var farm = Path.Combine(repo, "farm");
        var (warmupCode, warmupOutput) = await RunAsync(farm, resources);
        if (warmupCode != 0 || !warmupOutput.Contains($"Bench Farm {count:00}", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"./farm plugins failed ({warmupCode}):\n{warmupOutput}");
            return 1;
        }

        var rows = warmupOutput.Split('\n').Count(l => l.Contains("/Plugins/", StringComparison.Ordinal));
        var wall = new List<double>();
        var cpu = new List<double>();
        var rebuilt = 0;
        for (var run = 0; run < cliRuns; run++)
        {
            var cpuBefore = ChildCpu.Milliseconds();
            var watch = Stopwatch.StartNew();
            var (code, output) = await RunAsync(farm, resources);
            watch.Stop();
            var cpuUsed = ChildCpu.Milliseconds() - cpuBefore;
            if (code != 0)
            {
                Console.Error.WriteLine($"./farm plugins failed ({code}):\n{output}");
                return 1;
            }

            if (output.Contains("farm: building", StringComparison.Ordinal) && rebuilt++ < 5)
            {
                run--; // a source changed under us (others work in this tree): that call built, it does not count
                continue;
            }

            wall.Add(watch.Elapsed.TotalMilliseconds);
            cpu.Add(cpuUsed);
        }

        Console.WriteLine($"| `./farm plugins` wall time, up-to-date build, {rows} rows ({count} bench + the repository's own), median of {cliRuns} | {Median(wall):0} ms (min {wall.Min():0} ms, max {wall.Max():0} ms) | < 400 ms |");
        Console.WriteLine($"| same, CPU time (user + sys of the launcher, `find` and `dotnet`), median of {cliRuns} | {Median(cpu):0} ms (min {cpu.Min():0} ms) | |");
        Console.WriteLine($"| load average while it ran (1 min, 2 cores); calls that rebuilt, not counted | {File.ReadAllText("/proc/loadavg").Split(' ')[0]}; {rebuilt} | |");
    }

    return 0;
}
finally
{
    Directory.Delete(resources, recursive: true);
}

static double Median(List<double> values) => Percentile(values, 0.5);

static double Percentile(List<double> values, double p)
{
    var sorted = values.Order().ToList();
    return sorted[(int)Math.Round(p * (sorted.Count - 1))];
}

static string FindRepo()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "farm")) && File.Exists(Path.Combine(dir.FullName, "FarmPlugins.sln")))
        {
            return dir.FullName;
        }
    }

    throw new InvalidOperationException("cannot find the repository root: pass --repo");
}

static async Task<(int Code, string Output)> RunAsync(string farm, string resources)
{
    var start = new ProcessStartInfo(farm) { RedirectStandardOutput = true, RedirectStandardError = true };
    start.ArgumentList.Add("plugins");
    start.Environment["FARM_RESOURCES"] = resources;
    using var process = Process.Start(start)!;
    var stdout = process.StandardOutput.ReadToEndAsync();
    var stderr = process.StandardError.ReadToEndAsync();
    await process.WaitForExitAsync();
    return (process.ExitCode, await stdout + await stderr);
}

using System.Diagnostics;
using System.Text;
using FarmApi;
using FarmPlugins.TestSupport;

namespace FarmPlugins.Hosts.Tests;

/// <summary>
/// Runs a plan's tasks the way a farm node would: files staged into an empty job folder, every task's commands in
/// order with the job folder as working directory, in dependency order; a non-zero exit or a missing output fails.
/// </summary>
public sealed class LocalTaskRunner
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string FarmToolsExecutable => Path.Combine(RepoRoot, "out", "resources", "Tools", "FarmTools", FarmTools.ExecutableName);

    public static IReadOnlyDictionary<string, InstallationMetadata> Installations() => new Dictionary<string, InstallationMetadata>
    {
        ["povray"] = new("povray", "3.7", Components.RequireExecutable("povray", "apt-get install -y povray")),
        ["blender"] = new("blender", "3.4", Components.FindOnPath("blender") ?? "blender"),
        [FarmTools.HostName] = new(FarmTools.HostName, "2.0", FarmToolsExecutable),
    };

    public static async Task StageAsync(RenderPlan plan, string jobFolder)
    {
        foreach (var file in plan.Files)
        {
            var target = JobPaths.ResolveInside(jobFolder, file.RelativePath);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            await using var source = File.OpenRead(file.LocalPath);
            await using var destination = File.Create(target);
            await source.CopyToAsync(destination);
        }
    }

    /// <summary>Stages and runs every task; returns the tasks' combined output.</summary>
    public static async Task<string> RunAsync(RenderPlan plan, string jobFolder, IReadOnlyDictionary<string, InstallationMetadata>? installations = null)
    {
        await StageAsync(plan, jobFolder);
        return await RunTasksAsync(plan.CreateTasks(installations ?? Installations()), jobFolder);
    }

    public static async Task<string> RunTasksAsync(IReadOnlyList<TaskSpec> tasks, string jobFolder)
    {
        var log = new StringBuilder();
        var done = new HashSet<string>();
        var pending = tasks.ToList();
        while (pending.Count > 0)
        {
            var ready = pending.FirstOrDefault(t => (t.DependsOn ?? []).All(done.Contains))
                ?? throw new InvalidOperationException("dependency cycle");
            foreach (var command in ready.Commands)
            {
                var (exit, output) = await RunProcessAsync(command.Executable, command.Arguments, jobFolder);
                log.AppendLine($"[{ready.Id}] {command.Executable} {string.Join(' ', command.Arguments)} -> {exit}");
                if (exit != 0)
                {
                    throw new InvalidOperationException($"task {ready.Id} failed with exit {exit}: {command.Executable} {string.Join(' ', command.Arguments)}\n{output}");
                }
            }

            foreach (var output in ready.Outputs ?? [])
            {
                if (!File.Exists(Path.Combine(jobFolder, output)))
                {
                    throw new InvalidOperationException($"task {ready.Id}: missing output {output}");
                }
            }

            done.Add(ready.Id);
            pending.Remove(ready);
        }

        return log.ToString();
    }

    public static async Task<(int Exit, string Output)> RunProcessAsync(string executable, IEnumerable<string> arguments, string workingDirectory, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo(executable)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var tracker = new ProcessTracker();
        using var process = tracker.Start(info);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(cancel.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    private static string FindRepoRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FarmPlugins.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("FarmPlugins.sln not found above the test folder.");
    }
}

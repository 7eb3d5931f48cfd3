using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using FarmApi;

namespace FarmPlugins.LocalQueue;

/// <summary>How an agent runs: its data directory, identity and timings (all shortenable by tests).</summary>
internal sealed record AgentOptions(string DataDirectory, string AgentId, TimeSpan Heartbeat, TimeSpan Lease, TimeSpan Idle, TimeSpan Poll)
{
    public static AgentOptions Parse(string[] args)
    {
        string? Value(string name)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }

        double Seconds(string name, double fallback) =>
            Value(name) is { } text ? double.Parse(text, CultureInfo.InvariantCulture) : fallback;

        var data = Value("--data") ?? throw new ArgumentException("agent: --data DIR is required");
        return new AgentOptions(data, Value("--id") ?? $"agent-{Environment.ProcessId}",
            TimeSpan.FromSeconds(Seconds("--heartbeat", 5)), TimeSpan.FromSeconds(Seconds("--lease", 30)),
            TimeSpan.FromSeconds(Seconds("--idle", 60)), TimeSpan.FromSeconds(Seconds("--poll", 1)));
    }
}

/// <summary>
/// A LocalQueue agent: a detached process that claims tasks under a lease, runs each in its own process group in the
/// job folder, streams its output to the job's and the task's logs, and exits after an idle timeout. Idle, it sleeps
/// on a file watch of the queue's wake file (no busy polling).
/// </summary>
internal sealed class Agent
{
    private readonly AgentOptions _options;
    private readonly QueueStore _store;
    private readonly LocalQueuePaths _paths;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly string _node;

    public Agent(AgentOptions options)
    {
        _options = options;
        _paths = new LocalQueuePaths(options.DataDirectory);
        _store = new QueueStore(_paths.Database, TimeProvider.System);
        _node = $"{Environment.MachineName}/{options.AgentId}";
    }

    public static async Task<int> MainAsync(string[] args)
    {
        var options = AgentOptions.Parse(args);
        var agent = new Agent(options);
        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        try
        {
            await agent.RunAsync(stop.Token).ConfigureAwait(false);
            return 0;
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
        finally
        {
            agent.Unregister();
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_paths.Agents);
        await File.WriteAllTextAsync(_paths.AgentPidFile(_options.AgentId), Environment.ProcessId.ToString(CultureInfo.InvariantCulture), cancellationToken)
            .ConfigureAwait(false);
        _store.Heartbeat(_options.AgentId, Environment.ProcessId);
        using var watcher = new FileSystemWatcher(_paths.Root, LocalQueuePaths.WakeFileName)
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.Attributes,
        };
        watcher.Changed += (_, _) => Wake();
        watcher.Created += (_, _) => Wake();
        watcher.EnableRaisingEvents = true;

        var lastWork = Stopwatch.StartNew();
        var lastBeat = Stopwatch.StartNew();
        while (!cancellationToken.IsCancellationRequested)
        {
            var claimed = _store.Claim(_options.AgentId, _node, _options.Lease);
            if (claimed is not null)
            {
                await RunTaskAsync(claimed, cancellationToken).ConfigureAwait(false);
                lastWork.Restart();
                continue;
            }

            if (lastWork.Elapsed > _options.Idle)
            {
                return;
            }

            if (lastBeat.Elapsed >= _options.Heartbeat)
            {
                _store.Heartbeat(_options.AgentId, Environment.ProcessId);
                lastBeat.Restart();
            }

            var wait = Min(_options.Poll, _options.Heartbeat, _options.Idle - lastWork.Elapsed + TimeSpan.FromMilliseconds(10));
            await _wake.WaitAsync(wait < TimeSpan.Zero ? TimeSpan.Zero : wait, cancellationToken).ConfigureAwait(false);
        }
    }

    private void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            _wake.Release();
        }
    }

    private void Unregister()
    {
        try
        {
            _store.RemoveAgent(_options.AgentId);
        }
        catch (FarmPluginException)
        {
        }

        File.Delete(_paths.AgentPidFile(_options.AgentId));
    }

    private static TimeSpan Min(params TimeSpan[] values) => values.Min();

    private async Task RunTaskAsync(ClaimedTask task, CancellationToken cancellationToken)
    {
        var logs = new TaskLogWriter(_paths.JobLog(task.JobSeq), _paths.TaskLog(task.JobSeq, task.Spec.Id), task.Spec.Id);
        await using var _ = logs.ConfigureAwait(false);
        logs.Write($"attempt {task.Attempt} started on {_node}");
        var exitCode = 0;
        using var deadline = task.Spec.Timeout is { } timeout ? new CancellationTokenSource(timeout) : new CancellationTokenSource();
        using var leaseLost = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, leaseLost.Token, cancellationToken);
        using var heartbeat = new PeriodicTimer(_options.Heartbeat);
        var beating = Task.Run(async () =>
        {
            try
            {
                while (await heartbeat.WaitForNextTickAsync(linked.Token).ConfigureAwait(false))
                {
                    try
                    {
                        _store.Heartbeat(_options.AgentId, Environment.ProcessId);
                        if (!_store.Renew(task, _options.AgentId, _options.Lease))
                        {
                            await leaseLost.CancelAsync().ConfigureAwait(false);
                        }
                    }
                    catch (FarmPluginException)
                    {
                        // The database was busy for too long: the next tick tries again (the lease outlives a few misses).
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);

        foreach (var command in task.Spec.Commands)
        {
            exitCode = await RunCommandAsync(task, command, logs, linked.Token).ConfigureAwait(false);
            if (exitCode != 0)
            {
                break;
            }
        }

        if (exitCode == 0 && !linked.IsCancellationRequested)
        {
            foreach (var output in task.Spec.Outputs ?? [])
            {
                if (!File.Exists(Path.Combine(task.Folder, output)))
                {
                    logs.Write($"missing output {output}");
                    exitCode = 1;
                    break;
                }
            }
        }

        if (deadline.IsCancellationRequested && !leaseLost.IsCancellationRequested)
        {
            logs.Write($"timed out after {task.Spec.Timeout!.Value.TotalSeconds:0.###} s; its processes were killed");
            exitCode = 124;
        }

        await linked.CancelAsync().ConfigureAwait(false);
        await beating.ConfigureAwait(false);
        if (leaseLost.IsCancellationRequested)
        {
            logs.Write("attempt ended: the task was stopped or its lease was given to another agent");
            return;
        }

        logs.Write(exitCode == 0 ? "completed" : $"failed with exit code {exitCode}");
        _store.Report(task, _options.AgentId, exitCode);
    }

    private async Task<int> RunCommandAsync(ClaimedTask task, Command command, TaskLogWriter logs, CancellationToken cancellationToken)
    {
        var environment = new Dictionary<string, string>(task.Environment, StringComparer.Ordinal)
        {
            ["FARM_JOB_ID"] = task.JobId,
            ["FARM_TASK_ID"] = task.Spec.Id,
            ["FARM_ATTEMPT"] = task.Attempt.ToString(CultureInfo.InvariantCulture),
            ["FARM_JOB_FOLDER"] = task.Folder,
        };
        var executable = ResolveExecutable(command.Executable, task.Folder,
            environment.TryGetValue("PATH", out var path) ? path : Environment.GetEnvironmentVariable("PATH"));
        if (executable is null)
        {
            logs.Write($"cannot run '{command.Executable}': no such executable (not a file, and not found on PATH)");
            return 127;
        }

        // setsid gives the task a process group of its own, so stop and timeout kill the whole tree.
        var info = new ProcessStartInfo("setsid")
        {
            WorkingDirectory = task.Folder,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(executable);
        foreach (var argument in command.Arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => logs.WriteOutput(e.Data);
        process.ErrorDataReceived += (_, e) => logs.WriteOutput(e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            logs.Write($"cannot run '{command.Executable}': {ex.Message}");
            return 127;
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _store.SetProcessGroup(task, _options.AgentId, process.Id);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            _ = NativeMethods.Kill(-process.Id, NativeMethods.SigKill);
            _ = NativeMethods.Kill(process.Id, NativeMethods.SigKill);
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await process.WaitForExitAsync(grace.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }

            return 137;
        }

        return process.ExitCode;
    }

    internal static string? ResolveExecutable(string executable, string folder, string? path)
    {
        if (executable.Contains('/', StringComparison.Ordinal))
        {
            var full = Path.IsPathRooted(executable) ? executable : Path.Combine(folder, executable);
            return File.Exists(full) ? full : null;
        }

        foreach (var directory in (path ?? "/usr/local/bin:/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, executable);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

/// <summary>Appends a task's output to the job's render log and the task's own log, each line stamped with the time and the task id.</summary>
internal sealed class TaskLogWriter : IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly StreamWriter _job;
    private readonly StreamWriter _task;
    private readonly string _taskId;

    public TaskLogWriter(string jobLog, string taskLog, string taskId)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(taskLog)!);
        _job = Open(jobLog);
        _task = Open(taskLog);
        _taskId = taskId;
    }

    public void Write(string message) => WriteLine($"farm: {message}");

    public void WriteOutput(string? line)
    {
        if (line is not null)
        {
            WriteLine(line);
        }
    }

    private void WriteLine(string text)
    {
        var line = $"{DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} [{_taskId}] {text}\n";
        lock (_gate)
        {
            // One write per line to an O_APPEND file: lines of several agents never interleave.
            _job.Write(line);
            _job.Flush();
            _task.Write(line);
            _task.Flush();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _job.DisposeAsync().ConfigureAwait(false);
        await _task.DisposeAsync().ConfigureAwait(false);
    }

    private static StreamWriter Open(string path)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        return new StreamWriter(stream, new UTF8Encoding(false), 1 << 16) { AutoFlush = false };
    }
}

internal static partial class NativeMethods
{
    public const int SigKill = 9;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    public static bool IsAlive(int pid) => pid > 0 && Kill(pid, 0) == 0;
}

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using FarmApi;
using FarmApi.Processes;

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
    /// <summary>A task that ends within this (and succeeds) lets the agent claim the job's next tasks in batches.</summary>
    internal static readonly TimeSpan ShortTask = TimeSpan.FromMilliseconds(50);

    /// <summary>How many tasks an agent claims at once while tasks are short.</summary>
    internal const int AheadTasks = 8;

    /// <summary>How long a command runs before its process group is recorded in the queue.</summary>
    internal static readonly TimeSpan ProcessGroupDelay = TimeSpan.FromMilliseconds(50);

    private readonly AgentOptions _options;
    private readonly QueueStore _store;
    private readonly LocalQueuePaths _paths;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly string _node;
    private readonly object _beatGate = new();
    private (long Seq, AppendLog Writer)? _jobLog;
    private RunningTask? _running;
    private long _generation;
    private (IReadOnlyDictionary<string, string> Source, Dictionary<string, string> Environment)? _spawnBase;
    private int _holding;
    private readonly ExecutableLookup _executables = new();
    private readonly Lazy<Dictionary<string, string>> _baseEnvironment = new(() =>
        Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? string.Empty, StringComparer.Ordinal));

    public Agent(AgentOptions options)
    {
        _options = options;
        _paths = new LocalQueuePaths(options.DataDirectory);
        _store = new QueueStore(_paths.Database, TimeProvider.System, keepConnection: true);
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
        // Idempotent: an agent started by hand on a new data directory finds the schema too.
        _store.Initialize();
        _store.Heartbeat(_options.AgentId, Environment.ProcessId);
        Directory.CreateDirectory(_paths.WakeFolder);
        using var watcher = new FileSystemWatcher(_paths.WakeFolder, LocalQueuePaths.WakeFileName)
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.Attributes,
        };
        watcher.Changed += (_, _) => Wake();
        watcher.Created += (_, _) => Wake();
        watcher.EnableRaisingEvents = true;

        using var heartbeat = new Timer(_ => Beat(), null, _options.Heartbeat, _options.Heartbeat);
        var lastWork = Stopwatch.StartNew();
        var ahead = new Queue<(ClaimedTask Task, long Generation)>();
        var reports = new List<TaskReport>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                RunClaimedWork(ahead, reports, lastWork, cancellationToken);
                CloseJobLog();
                if (lastWork.Elapsed > _options.Idle)
                {
                    return;
                }

                var wait = Min(_options.Poll, _options.Idle - lastWork.Elapsed + TimeSpan.FromMilliseconds(10));
                await _wake.WaitAsync(wait < TimeSpan.Zero ? TimeSpan.Zero : wait, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            // Told to stop: what ran is reported, what was claimed ahead and never started is given back.
            try
            {
                _store.Report(reports, _options.AgentId);
                _store.Release([.. ahead.Select(a => a.Task)], _options.AgentId);
            }
            catch (FarmPluginException)
            {
                // The database stayed busy: those leases lapse and the tasks run again elsewhere.
            }
        }
    }

    /// <summary>
    /// Runs tasks until none is runnable. While tasks end within <see cref="ShortTask"/>, the agent claims up to
    /// <see cref="AheadTasks"/> of a job at once and reports them in one transaction with the next claim: a burst of
    /// short tasks costs one commit per batch, not one per task. A long task is reported as soon as it ends.
    /// </summary>
    private void RunClaimedWork(Queue<(ClaimedTask Task, long Generation)> ahead, List<TaskReport> reports, Stopwatch lastWork,
        CancellationToken cancellationToken)
    {
        var claim = 1;
        while (!cancellationToken.IsCancellationRequested)
        {
            if (ahead.Count == 0)
            {
                var generation = Interlocked.Read(ref _generation);
                foreach (var claimed in _store.ReportAndClaim(reports, _options.AgentId, _node, _options.Lease, claim))
                {
                    ahead.Enqueue((claimed, generation));
                }

                reports.Clear();
                Volatile.Write(ref _holding, ahead.Count);
                if (ahead.Count == 0)
                {
                    return;
                }
            }

            var (task, claimedAt) = ahead.Dequeue();
            // The queue changed since this task was claimed (a stop, a restart): it runs only if it is still ours.
            if (claimedAt != Interlocked.Read(ref _generation) && !_store.StillHeld(task, _options.AgentId))
            {
                continue;
            }

            var started = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var watch = Stopwatch.StartNew();
            var (exitCode, inlineLog) = RunTask(task, cancellationToken);
            lastWork.Restart();
            if (exitCode is not { } code)
            {
                claim = 1;
                continue; // stopped, or the lease went to another agent: nothing to report
            }

            reports.Add(new TaskReport(task, code, started, inlineLog));
            var isShort = code == 0 && watch.Elapsed < ShortTask;
            claim = isShort ? AheadTasks : 1;
            if ((!isShort || reports.Count >= AheadTasks) && ahead.Count > 0)
            {
                // Reported now, not with the next claim (which waits for the tasks still held).
                _store.Report(reports, _options.AgentId);
                reports.Clear();
            }

            Volatile.Write(ref _holding, ahead.Count + reports.Count);
        }
    }

    /// <summary>The job's render log, kept open while the agent runs tasks of that job (one open per job, not per task).</summary>
    private AppendLog JobLog(long seq)
    {
        if (_jobLog is { } open && open.Seq == seq)
        {
            return open.Writer;
        }

        CloseJobLog();
        Directory.CreateDirectory(Path.GetDirectoryName(_paths.TaskLog(seq, "t"))!);
        var writer = AppendLog.Open(_paths.JobLog(seq));
        _jobLog = (seq, writer);
        return writer;
    }

    private void CloseJobLog()
    {
        _jobLog?.Writer.Dispose();
        _jobLog = null;
    }

    private void Wake()
    {
        Interlocked.Increment(ref _generation);
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

    /// <summary>
    /// Runs a claimed task on the calling thread; returns the exit code to report (null when the attempt is no longer
    /// this agent's) and, for a short attempt, its log's lines to report with it instead of a file. Its lease is renewed
    /// by the agent's heartbeat timer (<see cref="Beat"/>), which also notices a stop.
    /// </summary>
    private (int? ExitCode, string? InlineLog) RunTask(ClaimedTask task, CancellationToken cancellationToken)
    {
        using var logs = new TaskLogWriter(JobLog(task.JobSeq), _paths.TaskLog(task.JobSeq, task.Spec.Id), task.Spec.Id,
            () => _store.GetInlineLog(task.JobSeq, task.Index));
        logs.Write($"attempt {task.Attempt} started on {_node}");
        var exitCode = 0;
        using var deadline = task.Spec.Timeout is { } timeout ? new CancellationTokenSource(timeout) : new CancellationTokenSource();
        using var leaseLost = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, leaseLost.Token, cancellationToken);
        Volatile.Write(ref _running, new RunningTask(task, leaseLost));
        try
        {
            foreach (var command in task.Spec.Commands)
            {
                exitCode = RunCommand(task, command, logs, linked.Token);
                if (exitCode != 0)
                {
                    break;
                }
            }
        }
        finally
        {
            lock (_beatGate)
            {
                // After this no heartbeat touches leaseLost, which is disposed on return.
                Volatile.Write(ref _running, null);
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

        if (leaseLost.IsCancellationRequested)
        {
            logs.Write("attempt ended: the task was stopped or its lease was given to another agent");
            logs.Spill(); // no report carries these lines
            return (null, null);
        }

        logs.Write(exitCode == 0 ? "completed" : $"failed with exit code {exitCode}");
        return (exitCode, logs.Finish());
    }

    /// <summary>The heartbeat: marks the agent alive and renews the running task's lease; a lost lease (or a stopped job) kills the task.</summary>
    private void Beat()
    {
        if (!Monitor.TryEnter(_beatGate))
        {
            return; // the previous beat is still waiting for the database
        }

        try
        {
            _store.Heartbeat(_options.AgentId, Environment.ProcessId);
            if (Volatile.Read(ref _holding) > 0)
            {
                // Tasks claimed ahead, and short ones not reported yet, keep their leases too.
                _store.RenewAll(_options.AgentId, _options.Lease);
            }

            if (Volatile.Read(ref _running) is { } running && !_store.Renew(running.Task, _options.AgentId, _options.Lease))
            {
                running.LeaseLost.Cancel();
            }
        }
        catch (FarmPluginException)
        {
            // The database was busy for too long: the next beat tries again (the lease outlives a few misses).
        }
        finally
        {
            Monitor.Exit(_beatGate);
        }
    }

    private sealed record RunningTask(ClaimedTask Task, CancellationTokenSource LeaseLost);

    private int RunCommand(ClaimedTask task, Command command, TaskLogWriter logs, CancellationToken cancellationToken)
    {
        var environment = new Dictionary<string, string>(task.Environment, StringComparer.Ordinal)
        {
            ["FARM_JOB_ID"] = task.JobId,
            ["FARM_TASK_ID"] = task.Spec.Id,
            ["FARM_ATTEMPT"] = task.Attempt.ToString(CultureInfo.InvariantCulture),
            ["FARM_JOB_FOLDER"] = task.Folder,
        };
        string? executable;
        try
        {
            executable = _executables.Find(command.Executable, task.Folder,
                environment.TryGetValue("PATH", out var path) ? path : Environment.GetEnvironmentVariable("PATH"));
        }
        catch (ArgumentException ex)
        {
            logs.Write($"cannot run '{command.Executable}': {ex.Message}");
            return 127;
        }

        if (executable is null)
        {
            logs.Write($"cannot run '{command.Executable}': no such executable (not a file, and not found on PATH)");
            return 127;
        }

        return TaskProcess.IsSupported
            ? RunSpawned(task, command, executable, environment, logs, cancellationToken)
            : RunWithSetsidAsync(task, command, executable, environment, logs, cancellationToken).GetAwaiter().GetResult();
    }

    private int RunSpawned(ClaimedTask task, Command command, string executable, Dictionary<string, string> environment,
        TaskLogWriter logs, CancellationToken cancellationToken)
    {
        // posix_spawn in a session of its own: one exec per command, and stop or timeout kill the whole tree.
        // The agent's environment with the job's over it, merged once per job; each command gets a copy (a copy of a
        // dictionary with the same comparer does not rehash) with its own variables set.
        if (_spawnBase is not { } merged || !ReferenceEquals(merged.Source, task.Environment))
        {
            var baseline = new Dictionary<string, string>(_baseEnvironment.Value, StringComparer.Ordinal);
            foreach (var (key, value) in task.Environment)
            {
                baseline[key] = value;
            }

            merged = (task.Environment, baseline);
            _spawnBase = merged;
        }

        var all = new Dictionary<string, string>(merged.Environment, StringComparer.Ordinal);
        foreach (var (key, value) in environment)
        {
            all[key] = value;
        }

        TaskProcess process;
        try
        {
            process = TaskProcess.Start(executable, command.Arguments, all, task.Folder);
        }
        catch (IOException ex)
        {
            logs.Write($"cannot run '{command.Executable}': {ex.Message}");
            return 127;
        }

        // The output is read on this thread until the command has ended (an agent runs one command at a time); a stop,
        // a timeout or a lost lease kills its group from the token's callback.
        var lines = new LineSplitter(logs.WriteOutput);
        int exitCode;
        var group = new ProcessGroupRecord(this, task, process, logs);
        using (cancellationToken.Register(process.KillGroup))
        using (new Timer(_ => group.Record(), null, ProcessGroupDelay, Timeout.InfiniteTimeSpan))
        {
            exitCode = process.RunToEnd(lines.Append);
            group.Ended();
        }

        lines.Flush();
        return cancellationToken.IsCancellationRequested ? 137 : exitCode;
    }

    /// <summary>
    /// Records a running command's process group in the queue (so a stop from another process, or the requeue of a lost
    /// agent's task, can kill it) once it has run for <see cref="ProcessGroupDelay"/>: the commands of a burst of short
    /// tasks end first and cost no write. A stop that came before finds no group to kill, but then the record itself
    /// fails (the attempt is no longer running as this agent's), the attempt ends as after a lost lease and the group is
    /// killed here. From then on the task's log is a file too, so its output can be followed while it runs.
    /// </summary>
    private sealed class ProcessGroupRecord(Agent agent, ClaimedTask task, TaskProcess process, TaskLogWriter logs)
    {
        private bool _ended;

        public void Record()
        {
            lock (this)
            {
                if (_ended)
                {
                    return;
                }

                try
                {
                    if (!agent._store.SetProcessGroup(task, agent._options.AgentId, process.Pid))
                    {
                        // As when a heartbeat finds the lease gone: the attempt ends (its token kills the group).
                        lock (agent._beatGate)
                        {
                            if (Volatile.Read(ref agent._running) is { } running && ReferenceEquals(running.Task, task))
                            {
                                running.LeaseLost.Cancel();
                            }
                        }

                        process.KillGroup();
                    }
                }
                catch (FarmPluginException)
                {
                    // The database stayed busy: the heartbeat still notices a stop or a lost lease.
                }

                try
                {
                    logs.Spill();
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FarmPluginException)
                {
                    // The lines stay in memory and are reported with the attempt's end.
                }
            }
        }

        public void Ended()
        {
            lock (this)
            {
                _ended = true;
            }
        }
    }

    private async Task<int> RunWithSetsidAsync(ClaimedTask task, Command command, string executable, Dictionary<string, string> environment,
        TaskLogWriter logs, CancellationToken cancellationToken)
    {
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

        logs.Spill(); // this path records the group at once: the log is a file from the start too
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
}

/// <summary>Cuts a process's output into lines as it arrives (a line may span reads); <see cref="Flush"/> emits an unterminated last line.</summary>
internal sealed class LineSplitter(Action<string> line)
{
    private readonly StringBuilder _pending = new();

    public void Append(string text)
    {
        var start = 0;
        int newline;
        while ((newline = text.IndexOf('\n', start)) >= 0)
        {
            var end = newline > start && text[newline - 1] == '\r' ? newline - 1 : newline;
            if (_pending.Length > 0)
            {
                _pending.Append(text, start, end - start);
                if (_pending.Length > 0 && _pending[^1] == '\r')
                {
                    _pending.Length--;
                }

                line(_pending.ToString());
                _pending.Clear();
            }
            else
            {
                line(text[start..end]);
            }

            start = newline + 1;
        }

        _pending.Append(text, start, text.Length - start);
    }

    public void Flush()
    {
        if (_pending.Length > 0)
        {
            line(_pending.ToString());
            _pending.Clear();
        }
    }
}

/// <summary>
/// Appends a task's output to the job's render log and the task's own log, each line stamped with the time and the task id.
/// The job's log gets every line at once. The task's own lines are kept in memory while the attempt is short: an attempt
/// that ends within <see cref="Agent.ProcessGroupDelay"/> (and writes less than <see cref="InlineLimit"/>) hands them to
/// its report, which keeps them in the queue, and no file is made; otherwise (<see cref="Spill"/>) the task's log becomes a
/// file, starting with what earlier attempts left in the queue. A file per short task cost an inode each; on this
/// project's machine (ext4 without a journal) every new inode is checked against the recently deleted ones, so after a
/// few thousand short tasks each creation cost more than the task's whole dispatch (perf, 2026-12-03).
/// </summary>
internal sealed class TaskLogWriter : IDisposable
{
    internal const int InlineLimit = 16 * 1024;

    private readonly Lock _gate = new();
    private readonly AppendLog _job;
    private readonly string _taskLog;
    private readonly string _taskId;
    private readonly Func<string?> _earlier;
    private readonly System.Buffers.ArrayBufferWriter<byte> _pending = new(256);
    private AppendLog? _task;

    /// <summary>
    /// Writes to <paramref name="job"/> (kept open by the agent across the tasks of one job, not disposed here) and to the
    /// task's log, <paramref name="taskLog"/> once it is a file; <paramref name="earlier"/> gives what the queue keeps of
    /// earlier attempts, asked only when the file is made.
    /// </summary>
    public TaskLogWriter(AppendLog job, string taskLog, string taskId, Func<string?> earlier)
    {
        _job = job;
        _taskLog = taskLog;
        _taskId = taskId;
        _earlier = earlier;
    }

    public void Write(string message) => WriteLine($"farm: {message}");

    public void WriteOutput(string? line)
    {
        if (line is not null)
        {
            WriteLine(line);
        }
    }

    /// <summary>Makes the task's log a file now (the attempt runs long enough to be followed, or no report will carry it).</summary>
    public void Spill()
    {
        lock (_gate)
        {
            if (_task is null)
            {
                OpenFile();
            }
        }
    }

    /// <summary>
    /// At the attempt's end: the lines for its report, or null when they are in the task's file (made during the attempt,
    /// or by an earlier one: a log with a file is the file).
    /// </summary>
    public string? Finish()
    {
        lock (_gate)
        {
            if (_task is null && File.Exists(_taskLog))
            {
                OpenFile();
            }

            return _task is null ? Encoding.UTF8.GetString(_pending.WrittenSpan) : null;
        }
    }

    private void WriteLine(string text)
    {
        var line = Encoding.UTF8.GetBytes($"{DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} [{_taskId}] {text}\n");
        lock (_gate)
        {
            // One write per line to O_APPEND files: lines of several agents never interleave.
            _job.Write(line);
            if (_task is { } task)
            {
                task.Write(line);
            }
            else
            {
                System.Buffers.BuffersExtensions.Write(_pending, line);
                if (_pending.WrittenCount > InlineLimit)
                {
                    OpenFile();
                }
            }
        }
    }

    private void OpenFile()
    {
        var created = !File.Exists(_taskLog);
        AppendLog file;
        try
        {
            file = AppendLog.Open(_taskLog);
        }
        catch (DirectoryNotFoundException)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_taskLog)!);
            file = AppendLog.Open(_taskLog);
        }

        if (created && _earlier() is { Length: > 0 } earlier)
        {
            file.Write(Encoding.UTF8.GetBytes(earlier));
        }

        if (_pending.WrittenCount > 0)
        {
            file.Write(_pending.WrittenSpan);
            _pending.Clear();
        }

        _task = file;
    }

    public void Dispose() => _task?.Dispose();
}

/// <summary>
/// A log file opened for appending, written one whole line per call. On Linux a raw <c>O_APPEND</c> descriptor and one
/// <c>write(2)</c> per line: a <see cref="FileStream"/>'s open costs <c>fstatfs</c>, <c>flock</c> and <c>lseek</c> calls
/// besides, which were a fifth of an agent's CPU per short task (a task log is opened per task).
/// </summary>
internal sealed partial class AppendLog : IDisposable
{
    private const int OpenFlags = 0x1 | 0x40 | 0x400 | 0x80000; // O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC (Linux)
    private const int Eintr = 4;
    private const int Enoent = 2;
    private int _fd;
    private readonly FileStream? _stream;

    private AppendLog(int fd, FileStream? stream)
    {
        _fd = fd;
        _stream = stream;
    }

    public static AppendLog Open(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new AppendLog(-1, new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1));
        }

        int fd;
        while ((fd = OpenFile(path, OpenFlags, Convert.ToInt32("644", 8))) < 0 && Marshal.GetLastPInvokeError() == Eintr)
        {
        }

        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno == Enoent
                ? new DirectoryNotFoundException($"Cannot open the log {path}: its folder does not exist.")
                : new IOException($"Cannot open the log {path}: {Marshal.GetPInvokeErrorMessage(errno)}.");
        }

        return new AppendLog(fd, null);
    }

    public unsafe void Write(ReadOnlySpan<byte> line)
    {
        if (_stream is not null)
        {
            _stream.Write(line);
            _stream.Flush();
            return;
        }

        fixed (byte* start = line)
        {
            var done = 0;
            while (done < line.Length)
            {
                var written = WriteFile(_fd, start + done, (nuint)(line.Length - done));
                if (written < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Eintr)
                    {
                        continue;
                    }

                    throw new IOException($"Cannot write to a log: {Marshal.GetPInvokeErrorMessage(errno)}.");
                }

                done += (int)written;
            }
        }
    }

    public void Dispose()
    {
        _stream?.Dispose();
        if (_fd >= 0)
        {
            _ = CloseFile(_fd);
            _fd = -1;
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenFile(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint WriteFile(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int CloseFile(int fd);
}

internal static partial class NativeMethods
{
    public const int SigKill = 9;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    public static bool IsAlive(int pid) => pid > 0 && Kill(pid, 0) == 0;
}

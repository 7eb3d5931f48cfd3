using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace ReferenceFarm.Agent;

/// <summary>
/// Task processes run in a session (and process group) of their own: a signal meant for the agent (Ctrl+C in its
/// terminal) never reaches them, and stop, timeout and drain kill the whole group.
/// </summary>
internal static partial class TaskProcesses
{
    private const int SigKill = 9;

    /// <summary>The <c>setsid</c> executable, or null where there is none (tasks then share the agent's group).</summary>
    public static string? Setsid { get; } = new[] { "/usr/bin/setsid", "/bin/setsid" }.FirstOrDefault(File.Exists);

    /// <summary>Kills a task's process group (its pid is the group's id when it was started through setsid).</summary>
    /// <param name="pid">The task's process id.</param>
    public static void KillGroup(int pid)
    {
        if (pid > 0)
        {
            _ = Kill(-pid, SigKill);
        }
    }

    /// <summary>Kills a process left behind by an earlier run of the agent, if it is still the same process.</summary>
    /// <param name="pid">Its id.</param>
    /// <param name="startTime">Its start time as recorded (see <see cref="StartTime"/>).</param>
    /// <returns><see langword="true"/> when it was still running and was killed.</returns>
    public static bool KillLeftover(int pid, long startTime)
    {
        if (pid <= 0 || StartTime(pid) is not { } now || now != startTime)
        {
            // Gone, or the pid now belongs to another process.
            return false;
        }

        _ = Kill(-pid, SigKill);
        _ = Kill(pid, SigKill);
        return true;
    }

    /// <summary>A process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, it names one process.</summary>
    /// <param name="pid">The process id.</param>
    /// <returns>The start time, or null when the process is gone.</returns>
    public static long? StartTime(int pid)
    {
        try
        {
            // Read with one open and one read into a stack buffer (this runs once per task started).
            Span<byte> buffer = stackalloc byte[1024];
            int length;
            using (var handle = File.OpenHandle("/proc/" + pid.ToString(CultureInfo.InvariantCulture) + "/stat"))
            {
                length = RandomAccess.Read(handle, buffer, 0);
            }

            var stat = buffer[..length];
            // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
            var rest = stat[(stat.LastIndexOf((byte)')') + 2)..];
            for (var field = 0; field < 19; field++)
            {
                rest = rest[(rest.IndexOf((byte)' ') + 1)..];
            }

            var end = rest.IndexOf((byte)' ');
            return long.Parse(System.Text.Encoding.ASCII.GetString(end < 0 ? rest : rest[..end]), CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>Describes an exit code, naming the signal when the process was killed by one (.NET reports 128 + the signal).</summary>
    /// <param name="exitCode">The exit code.</param>
    /// <returns>The description.</returns>
    public static string DescribeExit(int exitCode)
    {
        if (exitCode is > 128 and < 160)
        {
            var signal = exitCode - 128;
            var name = signal switch { 1 => "SIGHUP", 2 => "SIGINT", 3 => "SIGQUIT", 6 => "SIGABRT", 9 => "SIGKILL", 11 => "SIGSEGV", 13 => "SIGPIPE", 15 => "SIGTERM", _ => null };
            return $"code {exitCode} (killed by signal {signal}{(name is null ? string.Empty : ", " + name)})";
        }

        return $"code {exitCode}";
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>
/// The tasks this agent runs, as lines appended to one journal, <c>WORK/running/journal</c> (a task that started, the process
/// it runs, a task that ended): an agent that was killed and started again kills what its previous run left behind (kill
/// before requeue) and reports those attempts at once, instead of letting their leases lapse. One journal rather than a file
/// per task: creating a file costs far more than appending a line, and this is written at every task.
/// </summary>
internal sealed class RunningRecords : IDisposable
{
    /// <summary>The journal is rewritten with only the running tasks when it grows past this.</summary>
    private const long CompactAt = 1 << 20;

    private readonly string _path;
    private readonly Lock _gate = new();
    private readonly Dictionary<(string JobId, string TaskId), Entry> _running = [];
    private FileStream? _journal;

    public RunningRecords(string workDirectory)
    {
        var folder = Path.Combine(workDirectory, "running");
        Directory.CreateDirectory(folder);
        _path = Path.Combine(folder, "journal");
    }

    /// <summary>One running attempt; <paramref name="Ended"/> marks its end.</summary>
    public sealed record Entry(string JobId, string TaskId, long Lease, int Pid, long StartTime, bool Ended = false);

    public void Write(Entry entry)
    {
        lock (_gate)
        {
            _running[(entry.JobId, entry.TaskId)] = entry;
            Append(entry);
        }
    }

    public void Remove(string jobId, string taskId)
    {
        lock (_gate)
        {
            if (_running.Remove((jobId, taskId), out var entry))
            {
                Append(entry with { Ended = true });
            }
        }
    }

    /// <summary>The attempts the journal holds as running: at start, those an earlier run of the agent left.</summary>
    /// <returns>The entries.</returns>
    public List<Entry> ReadAll()
    {
        var open = new Dictionary<(string, string), Entry>();
        lock (_gate)
        {
            // An agent of an earlier version kept one file per task: those are read once and folded into the journal.
            foreach (var legacy in Directory.EnumerateFiles(Path.GetDirectoryName(_path)!, "*.json"))
            {
                try
                {
                    if (JsonSerializer.Deserialize<Entry>(File.ReadAllText(legacy)) is { } entry)
                    {
                        open[(entry.JobId, entry.TaskId)] = entry;
                        Append(entry);
                    }
                }
                catch (Exception ex) when (ex is IOException or JsonException)
                {
                }

                File.Delete(legacy);
            }

            foreach (var line in File.Exists(_path) ? File.ReadLines(_path) : [])
            {
                Entry? entry;
                try
                {
                    entry = JsonSerializer.Deserialize<Entry>(line);
                }
                catch (JsonException)
                {
                    // A line cut short by a crash.
                    continue;
                }

                if (entry is null)
                {
                    continue;
                }

                if (entry.Ended)
                {
                    open.Remove((entry.JobId, entry.TaskId));
                }
                else
                {
                    open[(entry.JobId, entry.TaskId)] = entry;
                }
            }

            foreach (var (key, entry) in open)
            {
                _running.TryAdd(key, entry);
            }
        }

        return [.. open.Values];
    }

    private void Append(Entry entry)
    {
        if (_journal is null)
        {
            _journal = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        }
        else if (_journal.Length > CompactAt)
        {
            Compact();
        }

        // One write per line: a crash leaves at most the last line cut short.
        _journal!.Write(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(entry) + "\n"));
    }

    private void Compact()
    {
        _journal!.Dispose();
        var temporary = _path + ".tmp";
        File.WriteAllLines(temporary, _running.Values.Select(e => JsonSerializer.Serialize(e)));
        File.Move(temporary, _path, overwrite: true);
        _journal = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _journal?.Dispose();
            _journal = null;
        }
    }
}

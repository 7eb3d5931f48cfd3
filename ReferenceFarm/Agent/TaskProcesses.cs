using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
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
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>Finds an executable the way a shell would: a path with a slash as it is, a bare name on PATH.</summary>
    /// <param name="name">The name or path.</param>
    /// <param name="path">The PATH to search.</param>
    /// <returns>The full path, or null when not found.</returns>
    public static string? FindExecutable(string name, string? path)
    {
        if (name.Contains('/', StringComparison.Ordinal))
        {
            return File.Exists(name) ? Path.GetFullPath(name) : null;
        }

        foreach (var folder in (path ?? "/usr/local/bin:/usr/bin:/bin").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(folder, name);
            if (File.Exists(candidate) && (OperatingSystem.IsWindows() || (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0))
            {
                return Path.GetFullPath(candidate);
            }
        }

        return null;
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
/// The tasks this agent runs, one small file each under <c>WORK/running/</c>: an agent that was killed and started again
/// kills what its previous run left behind (kill before requeue) and reports those attempts at once, instead of letting
/// their leases lapse.
/// </summary>
internal sealed class RunningRecords
{
    private readonly string _folder;

    public RunningRecords(string workDirectory)
    {
        _folder = Path.Combine(workDirectory, "running");
        Directory.CreateDirectory(_folder);
    }

    /// <summary>One running attempt.</summary>
    public sealed record Entry(string JobId, string TaskId, long Lease, int Pid, long StartTime);

    private string PathOf(string jobId, string taskId) =>
        Path.Combine(_folder, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(jobId + "\n" + taskId)))[..24] + ".json");

    public void Write(Entry entry)
    {
        var path = PathOf(entry.JobId, entry.TaskId);
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(entry));
        File.Move(temporary, path, overwrite: true);
    }

    public void Remove(string jobId, string taskId)
    {
        try
        {
            File.Delete(PathOf(jobId, taskId));
        }
        catch (IOException)
        {
        }
    }

    public List<(string Path, Entry Entry)> ReadAll()
    {
        var entries = new List<(string, Entry)>();
        foreach (var path in Directory.EnumerateFiles(_folder, "*.json"))
        {
            try
            {
                if (JsonSerializer.Deserialize<Entry>(File.ReadAllText(path)) is { } entry)
                {
                    entries.Add((path, entry));
                }
            }
            catch (Exception ex) when (ex is IOException or JsonException)
            {
                File.Delete(path);
            }
        }

        return entries;
    }
}

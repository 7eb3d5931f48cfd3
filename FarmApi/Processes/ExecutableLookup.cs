using System.Collections.Concurrent;

namespace FarmApi.Processes;

/// <summary>
/// Finds task executables the way a shell does — a name with a slash in the job folder (never outside it), a bare name
/// in the first PATH folder holding an executable file of that name — and remembers where a bare name was found for each
/// PATH, so an agent running thousands of tasks checks one path (a <c>stat</c>) per task instead of probing every PATH
/// folder. Safe to use from several threads.
/// </summary>
public sealed class ExecutableLookup
{
    /// <summary>The PATH searched when none is given.</summary>
    public const string DefaultPath = "/usr/local/bin:/usr/bin:/bin";

    private readonly ConcurrentDictionary<(string Name, string Path), string> _found = new();

    /// <summary>Finds an executable for a task, remembering a bare name's place per PATH.</summary>
    /// <param name="executable">A bare name (looked up on <paramref name="path"/>), or a path: absolute, or relative to the job folder.</param>
    /// <param name="jobFolder">The task's job folder.</param>
    /// <param name="path">The task's PATH; <see cref="DefaultPath"/> when null.</param>
    /// <returns>The full path, or null when there is no such executable.</returns>
    /// <exception cref="ArgumentException">A relative path leads out of the job folder.</exception>
    public string? Find(string executable, string jobFolder, string? path)
    {
        ArgumentException.ThrowIfNullOrEmpty(executable);
        if (HasSlash(executable))
        {
            var full = Path.IsPathRooted(executable) ? executable : JobPaths.ResolveInside(jobFolder, executable, nameof(executable));
            return File.Exists(full) ? full : null;
        }

        var key = (executable, path ?? string.Empty);
        if (_found.TryGetValue(key, out var known) && File.Exists(known))
        {
            return known;
        }

        var found = FindOnPath(executable, path);
        if (found is not null)
        {
            _found[key] = found;
        }

        return found;
    }

    /// <summary>Finds a bare name on a PATH, as a shell does: the first folder holding an executable file of that name.</summary>
    /// <param name="name">The name.</param>
    /// <param name="path">The PATH; <see cref="DefaultPath"/> when null.</param>
    /// <returns>The full path, or null when not found.</returns>
    public static string? FindOnPath(string name, string? path)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        foreach (var folder in (path ?? DefaultPath).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.GetFullPath(Path.Combine(folder, name));
            if (File.Exists(candidate) && (OperatingSystem.IsWindows()
                || (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0))
            {
                return candidate;
            }
        }

        return null;
    }

    private static bool HasSlash(string executable) =>
        executable.Contains('/', StringComparison.Ordinal) || executable.Contains('\\', StringComparison.Ordinal);
}

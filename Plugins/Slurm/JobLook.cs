using System.Globalization;

namespace FarmPlugins.Slurm;

/// <summary>One look at a job: its record, an index of its arrays, and what its task scripts wrote, each read once.</summary>
internal sealed class JobLook(JobFolder folder, JobRecord record)
{
    private Dictionary<(int Run, int Ordinal), ArrayRecord>? _arrays;

    public JobFolder Folder { get; } = folder;

    public JobRecord Record { get; } = record;

    public StatusFiles Status { get; } = new(folder);

    /// <summary>The array that runs task <paramref name="ordinal"/> in <paramref name="run"/>, or null.</summary>
    public ArrayRecord? ArrayOf(int run, int ordinal)
    {
        if (_arrays is null)
        {
            _arrays = [];
            foreach (var each in Record.Runs)
            {
                foreach (var array in each.Arrays)
                {
                    foreach (var member in array.Ordinals)
                    {
                        _arrays[(each.Number, member)] = array;
                    }
                }
            }
        }

        return _arrays.GetValueOrDefault((run, ordinal));
    }
}

/// <summary>
/// The files the task scripts write in <c>.farm/run-N/status/</c>: exit codes, start times, attempts. Each run's
/// folder is listed once, so a job of thousands of tasks costs one listing, not thousands of failed opens.
/// </summary>
internal sealed class StatusFiles(JobFolder folder)
{
    private readonly Dictionary<int, HashSet<string>> _names = [];

    /// <summary>The exit code file, as listed at the first look at the run.</summary>
    public (int? Code, DateTimeOffset? At) Exit(int run, string taskId) => Exit(run, taskId, fresh: false);

    /// <summary>The exit code file, read now: for a task Slurm says has ended after the run's folder was listed.</summary>
    public (int? Code, DateTimeOffset? At) ExitNow(int run, string taskId) => Exit(run, taskId, fresh: true);

    private (int? Code, DateTimeOffset? At) Exit(int run, string taskId, bool fresh)
    {
        var path = folder.ExitFile(run, taskId);
        var text = Read(run, path, fresh);
        return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var code)
            ? (code, new DateTimeOffset(File.GetLastWriteTimeUtc(path), TimeSpan.Zero))
            : (null, null);
    }

    public DateTimeOffset? Start(int run, string taskId) =>
        long.TryParse(Read(run, folder.StartFile(run, taskId)), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;

    public (int Attempts, string? Node) Attempt(int run, int ordinal)
    {
        var parts = (Read(run, folder.AttemptFile(run, ordinal)) ?? string.Empty).Split(' ', 2);
        return int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var attempts)
            ? (attempts, parts.Length > 1 ? parts[1] : null)
            : (0, null);
    }

    private string? Read(int run, string path, bool fresh = false)
    {
        if (!fresh && !Listing(run).Contains(Path.GetFileName(path)))
        {
            return null;
        }

        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    private HashSet<string> Listing(int run)
    {
        if (!_names.TryGetValue(run, out var names))
        {
            var status = folder.StatusFolder(run);
            names = Directory.Exists(status)
                ? Directory.EnumerateFiles(status).Select(Path.GetFileName).OfType<string>().ToHashSet(StringComparer.Ordinal)
                : [];
            _names[run] = names;
        }

        return names;
    }
}

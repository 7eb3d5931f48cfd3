using System.Globalization;
using System.Text;
using FarmApi;

namespace FarmPlugins.Cli;

/// <summary>A job as <c>--json</c> prints it.</summary>
/// <param name="Id">The job id.</param>
/// <param name="Name">The name.</param>
/// <param name="State">The state (Waiting, Running, Completed, Cancelled, Failed).</param>
/// <param name="Progress">Tasks by state.</param>
/// <param name="SubmittedAt">When it was accepted.</param>
/// <param name="StartedAt">When its first task started.</param>
/// <param name="CompletedAt">When it ended.</param>
/// <param name="Submitter">Who submitted it.</param>
/// <param name="RenderContextId">Its render context.</param>
/// <param name="Labels">Its labels.</param>
public sealed record JobJson(string Id, string Name, JobState State, ProgressJson Progress, DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt, DateTimeOffset? CompletedAt, string? Submitter, Guid? RenderContextId, IReadOnlyDictionary<string, string>? Labels)
{
    /// <summary>Makes the JSON form of a job.</summary>
    /// <param name="job">The job.</param>
    /// <returns>The JSON form.</returns>
    public static JobJson From(Job job) => new(job.Id, job.Name, job.State,
        new ProgressJson(job.Progress.TotalTasks, job.Progress.CompletedTasks, job.Progress.RunningTasks, job.Progress.FailedTasks),
        job.SubmittedAt, job.StartedAt, job.CompletedAt, job.Submitter, job.RenderContextId, job.Labels);
}

/// <summary>A job's progress in tasks.</summary>
/// <param name="Total">All tasks.</param>
/// <param name="Completed">Completed tasks.</param>
/// <param name="Running">Running tasks.</param>
/// <param name="Failed">Failed tasks.</param>
public sealed record ProgressJson(int Total, int Completed, int Running, int Failed);

/// <summary>A task as <c>farm tasks --json</c> prints it.</summary>
/// <param name="Id">The task id.</param>
/// <param name="Labels">Its labels.</param>
/// <param name="State">Its state.</param>
/// <param name="Attempts">Attempts so far.</param>
/// <param name="Node">Where the last attempt ran.</param>
/// <param name="ExitCode">The last exit code.</param>
/// <param name="StartedAt">When the last attempt started.</param>
/// <param name="CompletedAt">When it ended.</param>
public sealed record TaskJson(string Id, IReadOnlyDictionary<string, string>? Labels, JobState State, int Attempts, string? Node, int? ExitCode,
    DateTimeOffset? StartedAt, DateTimeOffset? CompletedAt)
{
    /// <summary>Makes the JSON form of a task.</summary>
    /// <param name="task">The task.</param>
    /// <returns>The JSON form.</returns>
    public static TaskJson From(TaskInfo task) =>
        new(task.Id, task.Labels, task.State, task.Attempts, task.Node, task.ExitCode, task.StartedAt, task.CompletedAt);
}

/// <summary>Plain-text tables and progress lines.</summary>
internal static class Text
{
    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { headers };
        all.AddRange(rows);
        var widths = Enumerable.Range(0, headers.Count).Select(c => all.Max(r => c < r.Count ? r[c].Length : 0)).ToArray();
        var builder = new StringBuilder();
        foreach (var row in all)
        {
            for (var c = 0; c < headers.Count; c++)
            {
                var cell = c < row.Count ? row[c] : string.Empty;
                builder.Append(c == headers.Count - 1 ? cell : cell.PadRight(widths[c] + 2));
            }

            builder.Append('\n');
        }

        return builder.ToString().TrimEnd('\n');
    }

    public static string Time(DateTimeOffset? time) =>
        time is { } t ? t.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) : "-";

    public static string Progress(JobProgress p) =>
        string.Create(CultureInfo.InvariantCulture, $"{p.CompletedTasks}/{p.TotalTasks} done, {p.RunningTasks} running, {p.FailedTasks} failed");

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.0} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.0} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };

    public static string Duration(TimeSpan span) =>
        span.TotalHours >= 1 ? span.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture) : span.ToString(@"m\:ss", CultureInfo.InvariantCulture);
}

/// <summary>
/// Progress on stderr: on a terminal, one line redrawn in place; otherwise plain lines at most once a second.
/// </summary>
internal sealed class ProgressView(TextWriter writer, bool interactive) : IProgress<TransferProgress>
{
    private readonly System.Diagnostics.Stopwatch _started = System.Diagnostics.Stopwatch.StartNew();
    private readonly object _gate = new();
    private TimeSpan? _lastLine;
    private bool _drawn;
    private bool _finished;

    public static ProgressView For(CliSession session) =>
        new(session.Err, !Console.IsErrorRedirected && ReferenceEquals(session.Err, Console.Error));

    /// <summary>Reports synchronously, on the adapter's thread (no late report after <see cref="Finish"/>).</summary>
    public void Report(TransferProgress value) => Transfer(value);

    public void Transfer(TransferProgress p)
    {
        var seconds = Math.Max(_started.Elapsed.TotalSeconds, 0.001);
        var rate = Text.Bytes((long)(p.BytesDone / seconds)) + "/s";
        var width = 24;
        var filled = p.BytesTotal == 0 ? width : (int)(width * p.BytesDone / (double)p.BytesTotal);
        var bar = interactive ? "[" + new string('#', filled) + new string('.', width - filled) + "] " : string.Empty;
        Draw($"copying {bar}{Text.Bytes(p.BytesDone)}/{Text.Bytes(p.BytesTotal)}, {p.FilesDone}/{p.FilesTotal} files, {rate}",
            p.FilesDone == p.FilesTotal);
    }

    public void Job(Job job)
    {
        var p = job.Progress;
        var elapsed = _started.Elapsed;
        var eta = p.CompletedTasks > 0 && p.CompletedTasks < p.TotalTasks
            ? " ETA " + Text.Duration(TimeSpan.FromSeconds(elapsed.TotalSeconds / p.CompletedTasks * (p.TotalTasks - p.CompletedTasks)))
            : string.Empty;
        Draw($"{job.Id} {job.State}: {Text.Progress(p)} of {p.TotalTasks}, elapsed {Text.Duration(elapsed)}{eta}", job.State.IsTerminal());
    }

    public void Finish()
    {
        lock (_gate)
        {
            _finished = true;
            if (interactive && _drawn)
            {
                writer.WriteLine();
                _drawn = false;
            }
        }
    }

    private void Draw(string line, bool force)
    {
        // Adapters may report from several transfer threads at once.
        lock (_gate)
        {
            if (_finished)
            {
                return;
            }

            if (interactive)
            {
                writer.Write("\r\u001b[2K" + line);
                _drawn = true;
                return;
            }

            if (force || _lastLine is null || _started.Elapsed - _lastLine.Value >= TimeSpan.FromSeconds(1))
            {
                writer.WriteLine(line);
                _lastLine = _started.Elapsed;
            }
        }
    }
}

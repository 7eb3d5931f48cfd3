using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace ReferenceFarm.Server;

/// <summary>Job and task logs as append-only UTF-8 files under the data folder; read by byte offset.</summary>
public sealed class LogStore
{
    private readonly string _root;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _locks = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _folders = new(StringComparer.Ordinal);

    /// <summary>Keeps logs under <paramref name="root"/>.</summary>
    /// <param name="root">The logs folder.</param>
    public LogStore(string root)
    {
        _root = root;
        Directory.CreateDirectory(root);
    }

    /// <summary>The largest slice one read returns.</summary>
    public const int MaxRead = 1 << 20;

    private string JobLog(long jobSeq) => Path.Combine(_root, jobSeq.ToString(CultureInfo.InvariantCulture), "job.log");

    private string TaskLog(long jobSeq, int taskIndex) =>
        Path.Combine(_root, jobSeq.ToString(CultureInfo.InvariantCulture), "task-" + taskIndex.ToString(CultureInfo.InvariantCulture) + ".log");

    /// <summary>Appends a task's output to its task log, and to the job log with each line tagged by the task id.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task.</param>
    /// <param name="taskId">The task's id (the job log's tag).</param>
    /// <param name="text">The text.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public async Task AppendTaskOutputAsync(long jobSeq, int taskIndex, string taskId, string text, CancellationToken cancellationToken = default)
    {
        if (text.Length == 0)
        {
            return;
        }

        await AppendAsync(TaskLog(jobSeq, taskIndex), text, cancellationToken).ConfigureAwait(false);
        var tagged = new StringBuilder();
        foreach (var line in text.TrimEnd('\n').Split('\n'))
        {
            tagged.Append('[').Append(taskId).Append("] ").Append(line).Append('\n');
        }

        await AppendAsync(JobLog(jobSeq), tagged.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Appends a line the server writes about a task (started, completed, requeued) to both logs.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task.</param>
    /// <param name="taskId">The task's id.</param>
    /// <param name="line">The line, without its newline.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public async Task AppendEventAsync(long jobSeq, int taskIndex, string taskId, string line, CancellationToken cancellationToken = default)
    {
        await AppendAsync(TaskLog(jobSeq, taskIndex), "== " + line + "\n", cancellationToken).ConfigureAwait(false);
        await AppendAsync(JobLog(jobSeq), "[" + taskId + "] == " + line + "\n", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Appends a line the server writes about the whole job (stopped, restarted) to the job log.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="line">The line, without its newline.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public Task AppendJobEventAsync(long jobSeq, string line, CancellationToken cancellationToken = default) =>
        AppendAsync(JobLog(jobSeq), "== " + line + "\n", cancellationToken);

    /// <summary>Reads a log from a byte offset, never splitting a UTF-8 character.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task, or null for the job log.</param>
    /// <param name="offset">The byte offset.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The bytes read and the log's length.</returns>
    public async Task<(byte[] Bytes, long Length)> ReadAsync(long jobSeq, int? taskIndex, long offset, CancellationToken cancellationToken = default)
    {
        var path = taskIndex is null ? JobLog(jobSeq) : TaskLog(jobSeq, taskIndex.Value);
        if (!File.Exists(path))
        {
            return ([], 0);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16, FileOptions.Asynchronous);
        await using (stream.ConfigureAwait(false))
        {
            var length = stream.Length;
            if (offset >= length)
            {
                return ([], length);
            }

            stream.Position = offset;
            var buffer = new byte[(int)Math.Min(MaxRead, length - offset)];
            var read = 0;
            while (read < buffer.Length)
            {
                var n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }

            // Stop before a partial UTF-8 sequence at the end: the next read starts with it.
            var end = read;
            var back = 0;
            while (back < 3 && end - back - 1 >= 0 && (buffer[end - back - 1] & 0xC0) == 0x80)
            {
                back++;
            }

            if (end - back - 1 >= 0)
            {
                var lead = buffer[end - back - 1];
                var needed = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
                if (needed > back + 1)
                {
                    end = end - back - 1;
                }
            }

            return (buffer.AsSpan(0, end).ToArray(), length);
        }
    }

    /// <summary>Removes a job's logs.</summary>
    /// <param name="jobSeq">The job.</param>
    public void DeleteJob(long jobSeq)
    {
        var folder = Path.Combine(_root, jobSeq.ToString(CultureInfo.InvariantCulture));
        _folders.TryRemove(folder, out _);
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private async Task AppendAsync(string path, string text, CancellationToken cancellationToken)
    {
        var gate = _locks.GetOrAdd(path, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var folder = Path.GetDirectoryName(path)!;
            if (!_folders.ContainsKey(folder))
            {
                // Marked only once it exists: a concurrent append to another file of the same job must not skip ahead of it.
                Directory.CreateDirectory(folder);
                _folders.TryAdd(folder, 0);
            }

            // Small appends: a plain buffered write is cheaper than an asynchronous file handle.
            var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            await using (stream.ConfigureAwait(false))
            {
                await stream.WriteAsync(Encoding.UTF8.GetBytes(text), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            gate.Release();
        }
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace ReferenceFarm.Server;

/// <summary>
/// Job and task logs under the data folder, append-only UTF-8, read by byte offset. Each job has a folder with its job log
/// (<c>job.log</c>) and its tasks' logs packed in one file (<c>tasks.pack</c>, chunks appended as they come) with an index of
/// the chunks (<c>tasks.idx</c>: task index, offset, length): creating a file per task cost more than everything else the
/// server does for a short task. Jobs written by an earlier version keep their <c>task-N.log</c> files.
/// </summary>
public sealed class LogStore
{
    /// <summary>The largest slice one read returns.</summary>
    public const int MaxRead = 1 << 20;

    /// <summary>How many files stay open for appending at most.</summary>
    private const int MaxOpenFiles = 256;

    private const int IndexRecordSize = 16;

    private readonly string _root;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, OpenLog> _open = new(StringComparer.Ordinal);
    private readonly Dictionary<long, TaskLogs> _tasks = [];

    /// <summary>Keeps logs under <paramref name="root"/>.</summary>
    /// <param name="root">The logs folder.</param>
    public LogStore(string root)
    {
        _root = root;
        Directory.CreateDirectory(root);
    }

    private string Folder(long jobSeq) => Path.Combine(_root, jobSeq.ToString(CultureInfo.InvariantCulture));

    private string JobLog(long jobSeq) => Path.Combine(Folder(jobSeq), "job.log");

    private string LegacyTaskLog(long jobSeq, int taskIndex) =>
        Path.Combine(Folder(jobSeq), "task-" + taskIndex.ToString(CultureInfo.InvariantCulture) + ".log");

    /// <summary>Appends a task's output to its task log, and to the job log with each line tagged by the task id.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task.</param>
    /// <param name="taskId">The task's id (the job log's tag).</param>
    /// <param name="text">The text.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public Task AppendTaskOutputAsync(long jobSeq, int taskIndex, string taskId, string text, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (text.Length == 0)
        {
            return Task.CompletedTask;
        }

        var tagged = new StringBuilder();
        foreach (var line in text.TrimEnd('\n').Split('\n'))
        {
            tagged.Append('[').Append(taskId).Append("] ").Append(line).Append('\n');
        }

        lock (_gate)
        {
            AppendTask(jobSeq, taskIndex, text);
            Append(JobLog(jobSeq), tagged.ToString());
        }

        return Task.CompletedTask;
    }

    /// <summary>Appends a line the server writes about a task (started, completed, requeued) to both logs.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task.</param>
    /// <param name="taskId">The task's id.</param>
    /// <param name="line">The line, without its newline.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public Task AppendEventAsync(long jobSeq, int taskIndex, string taskId, string line, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            AppendTask(jobSeq, taskIndex, "== " + line + "\n");
            Append(JobLog(jobSeq), "[" + taskId + "] == " + line + "\n");
        }

        return Task.CompletedTask;
    }

    /// <summary>Appends a line the server writes about the whole job (stopped, restarted) to the job log.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="line">The line, without its newline.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public Task AppendJobEventAsync(long jobSeq, string line, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Append(JobLog(jobSeq), "== " + line + "\n");
        }

        return Task.CompletedTask;
    }

    /// <summary>Reads a log from a byte offset, never splitting a UTF-8 character.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task, or null for the job log.</param>
    /// <param name="offset">The byte offset.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The bytes read and the log's length.</returns>
    public async Task<(byte[] Bytes, long Length)> ReadAsync(long jobSeq, int? taskIndex, long offset, CancellationToken cancellationToken = default)
    {
        List<(long Offset, long Length)>? chunks = null;
        string path;
        lock (_gate)
        {
            path = JobLog(jobSeq);
            if (taskIndex is { } index)
            {
                var logs = TaskLogsOf(jobSeq);
                if (logs.Legacy)
                {
                    path = LegacyTaskLog(jobSeq, index);
                }
                else
                {
                    chunks = logs.Chunks.TryGetValue(index, out var found) ? [.. found.Select(c => (c.Offset, (long)c.Length))] : [];
                    path = logs.PackPath;
                }
            }
        }

        if (!File.Exists(path))
        {
            return ([], 0);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.Asynchronous);
        await using (stream.ConfigureAwait(false))
        {
            // A task's log is its chunks of the pack, in order; a job log (or a legacy task log) is one chunk, the whole file.
            chunks ??= [(0, stream.Length)];
            var length = chunks.Sum(c => c.Length);
            if (offset >= length)
            {
                return ([], length);
            }

            var buffer = new byte[(int)Math.Min(MaxRead, length - offset)];
            var read = 0;
            var start = 0L;
            foreach (var (chunkOffset, chunkLength) in chunks)
            {
                if (read == buffer.Length)
                {
                    break;
                }

                if (start + chunkLength > offset)
                {
                    var skip = Math.Max(0, offset - start);
                    var count = (int)Math.Min(chunkLength - skip, buffer.Length - read);
                    stream.Position = chunkOffset + skip;
                    await stream.ReadExactlyAsync(buffer.AsMemory(read, count), cancellationToken).ConfigureAwait(false);
                    read += count;
                }

                start += chunkLength;
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
        var folder = Folder(jobSeq);
        lock (_gate)
        {
            foreach (var path in _open.Keys.Where(p => Path.GetDirectoryName(p) == folder).ToList())
            {
                _open.Remove(path, out var file);
                file!.Handle.Dispose();
            }

            _tasks.Remove(jobSeq);
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    /// <summary>A job's task logs: where each task's chunks are in the pack. Called under the gate.</summary>
    private TaskLogs TaskLogsOf(long jobSeq)
    {
        if (_tasks.TryGetValue(jobSeq, out var logs))
        {
            return logs;
        }

        var folder = Folder(jobSeq);
        var indexPath = Path.Combine(folder, "tasks.idx");
        logs = new TaskLogs(Path.Combine(folder, "tasks.pack"), indexPath,
            Legacy: !File.Exists(indexPath) && Directory.Exists(folder) && Directory.EnumerateFiles(folder, "task-*.log").Any());
        if (File.Exists(indexPath))
        {
            var index = File.ReadAllBytes(indexPath);
            // A record cut short by a crash is ignored (its chunk was written first, and is simply not referred to).
            for (var at = 0; at + IndexRecordSize <= index.Length; at += IndexRecordSize)
            {
                var record = index.AsSpan(at, IndexRecordSize);
                logs.Add(BinaryPrimitives.ReadInt32LittleEndian(record), BinaryPrimitives.ReadInt64LittleEndian(record[4..]),
                    BinaryPrimitives.ReadInt32LittleEndian(record[12..]));
            }
        }

        _tasks[jobSeq] = logs;
        return logs;
    }

    /// <summary>Appends to a task's log. Called under the gate.</summary>
    private void AppendTask(long jobSeq, int taskIndex, string text)
    {
        var logs = TaskLogsOf(jobSeq);
        if (logs.Legacy)
        {
            Append(LegacyTaskLog(jobSeq, taskIndex), text);
            return;
        }

        // The chunk first, then its index record: a crash between the two leaves bytes nothing refers to, never a record
        // pointing at bytes that are not there.
        var (offset, length) = Append(logs.PackPath, text);
        Span<byte> record = stackalloc byte[IndexRecordSize];
        BinaryPrimitives.WriteInt32LittleEndian(record, taskIndex);
        BinaryPrimitives.WriteInt64LittleEndian(record[4..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(record[12..], length);
        var file = OpenForAppend(logs.IndexPath);
        // Whole records only, even after a torn one.
        file.Length -= file.Length % IndexRecordSize;
        Write(logs.IndexPath, file, record);
        logs.Add(taskIndex, offset, length);
    }

    /// <summary>Appends text to a file through a handle kept open: one pwrite, not an open, a write and a close. Called under the gate.</summary>
    private (long Offset, int Length) Append(string path, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var file = OpenForAppend(path);
        var offset = file.Length;
        Write(path, file, bytes);
        return (offset, bytes.Length);
    }

    private void Write(string path, OpenLog file, ReadOnlySpan<byte> bytes)
    {
        try
        {
            RandomAccess.Write(file.Handle, bytes, file.Length);
            file.Length += bytes.Length;
        }
        catch
        {
            _open.Remove(path);
            file.Handle.Dispose();
            throw;
        }
    }

    private OpenLog OpenForAppend(string path)
    {
        if (_open.TryGetValue(path, out var file))
        {
            return file;
        }

        if (_open.Count >= MaxOpenFiles)
        {
            foreach (var open in _open.Values)
            {
                open.Handle.Dispose();
            }

            _open.Clear();
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        file = new OpenLog(handle, RandomAccess.GetLength(handle));
        _open[path] = file;
        return file;
    }

    private sealed class OpenLog(SafeFileHandle handle, long length)
    {
        public SafeFileHandle Handle { get; } = handle;

        public long Length { get; set; } = length;
    }

    private sealed record TaskLogs(string PackPath, string IndexPath, bool Legacy)
    {
        public Dictionary<int, List<(long Offset, int Length)>> Chunks { get; } = [];

        public void Add(int taskIndex, long offset, int length)
        {
            if (!Chunks.TryGetValue(taskIndex, out var chunks))
            {
                Chunks[taskIndex] = chunks = [];
            }

            chunks.Add((offset, length));
        }
    }
}

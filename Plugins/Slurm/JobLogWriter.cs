using System.Text;
using System.Text.Json;
using FarmApi;

namespace FarmPlugins.Slurm;

/// <summary>
/// The job log: the tasks' own log files (written by Slurm, <c>--output</c>/<c>--error</c>), gathered line by line
/// into one append-only file, each line prefixed with its task id. Whoever reads the log brings it up to date, so its
/// offsets never move backwards whichever workstation reads.
/// </summary>
internal static class JobLogWriter
{
    private const int MaxReadBytes = 8 << 20;

    /// <summary>Appends what the task logs gained since the last reader; returns whether every task log was read to its end.</summary>
    public static async Task<bool> CatchUpAsync(JobView view, CancellationToken cancellationToken)
    {
        var folder = view.Folder;
        using var gate = await JobRecords.LockAsync(folder, folder.LogLockFile, cancellationToken).ConfigureAwait(false);
        var consumed = ReadState(folder.JobLogState);
        var text = new StringBuilder();
        var everything = true;
        foreach (var task in view.Tasks)
        {
            var path = folder.TaskLog(task.Ordinal, view.Record.MaxArraySize);
            var id = task.Task.Spec.Id;
            byte[] bytes;
            var from = consumed.GetValueOrDefault(id);
            try
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                if (stream.Length <= from)
                {
                    continue;
                }

                stream.Position = from;
                bytes = new byte[Math.Min(stream.Length - from, MaxReadBytes)];
                stream.ReadExactly(bytes);
                everything &= stream.Length - from <= MaxReadBytes;
            }
            catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
            {
                continue;
            }

            // A running task's last line may still be growing: it is taken once whole, or once the task has ended.
            var take = task.State.IsTerminal() ? bytes.Length : Array.LastIndexOf(bytes, (byte)'\n') + 1;
            everything &= take == bytes.Length;
            if (take == 0)
            {
                continue;
            }

            var chunk = Encoding.UTF8.GetString(bytes, 0, take);
            var lines = chunk.Split('\n');
            var count = chunk.EndsWith('\n') ? lines.Length - 1 : lines.Length;
            for (var i = 0; i < count; i++)
            {
                text.Append('[').Append(id).Append("] ").Append(lines[i].TrimEnd('\r')).Append('\n');
            }

            consumed[id] = from + take;
        }

        if (text.Length > 0)
        {
            await using (var log = new FileStream(folder.JobLog, FileMode.Append, FileAccess.Write, FileShare.ReadWrite))
            {
                var encoded = Encoding.UTF8.GetBytes(text.ToString());
                await log.WriteAsync(encoded, cancellationToken).ConfigureAwait(false);
            }

            var temporary = folder.JobLogState + $".{Guid.NewGuid():N}.tmp";
            await File.WriteAllTextAsync(temporary, JsonSerializer.Serialize(consumed), CancellationToken.None).ConfigureAwait(false);
            File.Move(temporary, folder.JobLogState, overwrite: true);
        }

        return everything;
    }

    /// <summary>Reads a log from a byte offset: whole lines only, unless <paramref name="wholeFile"/>.</summary>
    public static LogChunk ReadLines(string path, long offset, bool complete, bool wholeFile)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return new LogChunk(string.Empty, offset, complete && offset == 0);
        }

        using (stream)
        {
            var length = stream.Length;
            if (offset >= length)
            {
                return new LogChunk(string.Empty, offset, complete && offset == length);
            }

            stream.Position = offset;
            var buffer = new byte[Math.Min(length - offset, MaxReadBytes)];
            stream.ReadExactly(buffer);
            var end = wholeFile && buffer.Length == length - offset ? buffer.Length : Array.LastIndexOf(buffer, (byte)'\n') + 1;
            return new LogChunk(Encoding.UTF8.GetString(buffer, 0, end), offset + end, complete && offset + end == length);
        }
    }

    private static Dictionary<string, long> ReadState(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<Dictionary<string, long>>(File.ReadAllText(path)) ?? [];
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or JsonException)
        {
            return [];
        }
    }
}

using System.Text;
using System.Text.Json;
using FarmApi;

namespace FarmPlugins.Qarnot;

/// <summary>
/// The workstation's own record of a job under the plug-in's data directory: the logs drained from Qarnot's "fresh"
/// stdout/stderr (which hands each byte out once), which tasks are fully drained, what was fetched, and a cached
/// copy of the manifest. A host restarted later reads the whole log from here.
/// </summary>
internal sealed class LocalJobStore(string root)
{
    public string JobFolder(string jobId) => Path.Combine(root, "jobs", jobId);

    public string RenderLog(string jobId) => Path.Combine(JobFolder(jobId), "render.log");

    public string TaskLog(string jobId, string taskId) => Path.Combine(JobFolder(jobId), "tasks", taskId + ".log");

    public string EtagCache => Path.Combine(root, "etags.tsv");

    /// <summary>Holds the job's lock (between processes too) while <paramref name="action"/> runs.</summary>
    public async Task<T> LockedAsync<T>(string jobId, Func<Task<T>> action, CancellationToken cancellationToken)
    {
        var folder = JobFolder(jobId);
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, ".lock");
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        FileStream? gate = null;
        while (gate is null)
        {
            try
            {
                gate = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
            }
        }

        await using (gate.ConfigureAwait(false))
        {
            return await action().ConfigureAwait(false);
        }
    }

    public HashSet<string> ReadSet(string jobId, string name)
    {
        var path = Path.Combine(JobFolder(jobId), name);
        return File.Exists(path) ? [.. File.ReadAllLines(path).Where(l => l.Length > 0)] : [];
    }

    public void WriteSet(string jobId, string name, IEnumerable<string> values) =>
        WriteAtomic(Path.Combine(JobFolder(jobId), name), string.Join('\n', values.Order(StringComparer.Ordinal)) + "\n");

    public T? ReadJson<T>(string jobId, string name) where T : class
    {
        var path = Path.Combine(JobFolder(jobId), name);
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<T>(File.ReadAllText(path), QarnotJson.Options) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public void WriteJson<T>(string jobId, string name, T value) =>
        WriteAtomic(Path.Combine(JobFolder(jobId), name), JsonSerializer.Serialize(value, QarnotJson.Options));

    public static void Append(string path, string text)
    {
        if (text.Length == 0)
        {
            return;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        var bytes = Encoding.UTF8.GetBytes(text);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Reads a log from a byte offset.</summary>
    public static LogChunk Read(string path, long offset, bool complete)
    {
        if (!File.Exists(path))
        {
            return new LogChunk(string.Empty, offset, complete && offset == 0);
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var length = stream.Length;
        if (offset >= length)
        {
            return new LogChunk(string.Empty, offset, complete && offset == length);
        }

        stream.Position = offset;
        var buffer = new byte[length - offset];
        stream.ReadExactly(buffer);
        return new LogChunk(Encoding.UTF8.GetString(buffer), length, complete);
    }

    public void Delete(string jobId)
    {
        var folder = JobFolder(jobId);
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void WriteAtomic(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }
}

using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace FarmApi.Hashing;

/// <summary>
/// Remembers the content hash of files by path, size and modification time, so an unchanged file is not read again.
/// Kept in one text file; safe to share between threads, and between processes (the last writer wins; a lost entry
/// only costs a re-hash).
/// </summary>
public sealed class HashCache
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly string _cacheFile;
    private long _filesHashed;
    private int _dirty;

    /// <summary>Opens the cache kept in <paramref name="cacheFile"/>; a missing or damaged file starts it empty.</summary>
    /// <param name="cacheFile">The cache file; its folder is created when saving.</param>
    public HashCache(string cacheFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(cacheFile);
        _cacheFile = cacheFile;
        Load();
    }

    /// <summary>How many files this instance actually read to hash them.</summary>
    public long FilesHashed => Interlocked.Read(ref _filesHashed);

    /// <summary>The hash of a file; read from the cache when its path, size and modification time are unchanged.</summary>
    /// <param name="path">The file.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The lowercase hexadecimal SHA-256.</returns>
    public async Task<string> GetHashAsync(string path, CancellationToken cancellationToken = default)
    {
        var full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"'{full}' does not exist.", full);
        }

        var size = info.Length;
        var modified = info.LastWriteTimeUtc.Ticks;
        if (_entries.TryGetValue(full, out var cached) && cached.Size == size && cached.ModifiedTicks == modified)
        {
            return cached.Hash;
        }

        var hash = await ContentHash.ComputeFileAsync(full, cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _filesHashed);
        // A file changed while it was hashed is not cached: its next use hashes again.
        info.Refresh();
        if (info.Length == size && info.LastWriteTimeUtc.Ticks == modified)
        {
            _entries[full] = new Entry(size, modified, hash);
            Interlocked.Exchange(ref _dirty, 1);
        }

        return hash;
    }

    /// <summary>The cached hash of a file whose path, size and modification time are unchanged since it was hashed.</summary>
    /// <param name="path">The file.</param>
    /// <param name="hash">The cached hash, or null.</param>
    /// <returns><see langword="true"/> when the cache answers without reading the file.</returns>
    public bool TryGetCached(string path, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? hash)
    {
        var full = Path.GetFullPath(path);
        // The file is looked at only when the cache knows its path (a new file costs no stat here).
        if (_entries.ContainsKey(full) && new FileInfo(full) is { Exists: true } info)
        {
            return TryGetCached(full, info.Length, info.LastWriteTimeUtc, out hash);
        }

        hash = null;
        return false;
    }

    /// <summary>
    /// The cached hash of a file the caller has just measured (its size and modification time), without looking at the
    /// file again: a caller that measures every file of a request anyway saves a call to the file system per file.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="size">Its size, as just measured.</param>
    /// <param name="lastWriteTimeUtc">Its modification time, as just measured.</param>
    /// <param name="hash">The hash when cached for that size and time.</param>
    /// <returns><see langword="true"/> when cached.</returns>
    public bool TryGetCached(string path, long size, DateTime lastWriteTimeUtc, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? hash)
    {
        if (_entries.TryGetValue(Path.GetFullPath(path), out var cached) && cached.Size == size && cached.ModifiedTicks == lastWriteTimeUtc.Ticks)
        {
            hash = cached.Hash;
            return true;
        }

        hash = null;
        return false;
    }

    /// <summary>Records a hash computed elsewhere (while copying the file, say), for the file as it was before it was read.</summary>
    /// <param name="path">The file.</param>
    /// <param name="size">Its size before it was read.</param>
    /// <param name="lastWriteTimeUtc">Its modification time before it was read.</param>
    /// <param name="hash">The hash of what was read.</param>
    /// <remarks>Nothing is recorded when the file changed since: its next use hashes it again.</remarks>
    public void Remember(string path, long size, DateTime lastWriteTimeUtc, string hash)
    {
        if (!ContentHash.IsValid(hash))
        {
            throw new ArgumentException($"'{hash}' is not a SHA-256 content hash.", nameof(hash));
        }

        var full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (info.Exists && info.Length == size && info.LastWriteTimeUtc.Ticks == lastWriteTimeUtc.Ticks)
        {
            _entries[full] = new Entry(size, lastWriteTimeUtc.Ticks, hash);
            Interlocked.Exchange(ref _dirty, 1);
        }
    }

    /// <summary>Writes the cache file when something changed (atomically: a temporary file, then a rename).</summary>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task that completes when saved.</returns>
    public async Task SaveAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _dirty, 0) == 0)
        {
            return;
        }

        var folder = Path.GetDirectoryName(Path.GetFullPath(_cacheFile))!;
        Directory.CreateDirectory(folder);
        var builder = new StringBuilder();
        foreach (var (path, entry) in _entries)
        {
            builder.Append(entry.Hash).Append('\t').Append(entry.Size.ToString(CultureInfo.InvariantCulture)).Append('\t')
                .Append(entry.ModifiedTicks.ToString(CultureInfo.InvariantCulture)).Append('\t').Append(path).Append('\n');
        }

        var temporary = $"{_cacheFile}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        await File.WriteAllTextAsync(temporary, builder.ToString(), cancellationToken).ConfigureAwait(false);
        File.Move(temporary, _cacheFile, overwrite: true);
    }

    private void Load()
    {
        string[] lines;
        try
        {
            lines = File.Exists(_cacheFile) ? File.ReadAllLines(_cacheFile) : [];
        }
        catch (IOException)
        {
            return;
        }
        catch (UnauthorizedAccessException)
        {
            return;
        }

        foreach (var line in lines)
        {
            var parts = line.Split('\t', 4);
            if (parts.Length == 4 && ContentHash.IsValid(parts[0])
                && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var size)
                && long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ticks))
            {
                _entries[parts[3]] = new Entry(size, ticks, parts[0]);
            }
        }
    }

    private sealed record Entry(long Size, long ModifiedTicks, string Hash);
}

namespace FarmApi;

/// <summary>Checks for paths of job data: relative to the job folder, never escaping it.</summary>
public static class JobPaths
{
    /// <summary>Why <paramref name="relativePath"/> is not a safe job-relative path, or <see langword="null"/> when it is.</summary>
    /// <param name="relativePath">A path from a request.</param>
    /// <returns>The reason, for an error message.</returns>
    public static string? Check(string? relativePath)
    {
        if (string.IsNullOrWhiteSpace(relativePath))
        {
            return "is empty";
        }

        if (relativePath.Contains('\0', StringComparison.Ordinal) || relativePath.Any(char.IsControl))
        {
            return "contains a control character";
        }

        if (relativePath[0] is '/' or '\\' || Path.IsPathRooted(relativePath)
            || (relativePath.Length >= 2 && relativePath[1] == ':' && char.IsAsciiLetter(relativePath[0])))
        {
            return $"'{relativePath}' is absolute; it must be relative to the job folder";
        }

        foreach (var segment in relativePath.Split('/', '\\'))
        {
            if (segment == "..")
            {
                return $"'{relativePath}' has a '..' segment; it must stay inside the job folder";
            }
        }

        return null;
    }

    /// <summary>Whether <paramref name="relativePath"/> is relative and has no <c>..</c> segment.</summary>
    /// <param name="relativePath">A path from a request.</param>
    /// <returns><see langword="true"/> when it is safe to join to a job folder.</returns>
    public static bool IsSafe(string? relativePath) => Check(relativePath) is null;

    /// <summary>
    /// Joins <paramref name="relativePath"/> to <paramref name="root"/> and makes sure the result stays inside
    /// <paramref name="root"/>, following every symbolic link on the way.
    /// </summary>
    /// <param name="root">The job folder.</param>
    /// <param name="relativePath">A path from a request.</param>
    /// <param name="paramName">The name to give in the error.</param>
    /// <returns>The full path.</returns>
    /// <exception cref="ArgumentException">The path is absolute, climbs out, or passes through a link that leads out.</exception>
    public static string ResolveInside(string root, string relativePath, string paramName = "relativePath")
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        var reason = Check(relativePath);
        if (reason is not null)
        {
            throw new ArgumentException($"{paramName}: {reason}.", paramName);
        }

        string? realRoot = null;
        return Walk(Path.GetFullPath(root), relativePath, paramName, paramName, ref realRoot, checkedFolders: null, noLinks: false);
    }

    /// <summary>
    /// <see cref="ResolveInside(string, string, string)"/> for many paths into one folder, every path checked before any is
    /// returned: the folder is resolved once and each folder on the way is looked at once, not once per file (staging a
    /// tree of a thousand files otherwise spends more system calls checking paths than linking files). A folder that is
    /// empty when the call looks at it (a new job's) has no link inside, and costs no look per path at all.
    /// </summary>
    /// <param name="root">The job folder.</param>
    /// <param name="relativePaths">Paths from a request.</param>
    /// <param name="paramName">The name of the list, given in an error with the offending index (<c>files[3].RelativePath</c>
    /// for <c>files</c> and <c>RelativePath</c>).</param>
    /// <param name="memberName">The member of an element that holds the path, or null.</param>
    /// <returns>The full paths, in order.</returns>
    /// <exception cref="ArgumentException">A path is absolute, climbs out, or passes through a link that leads out.</exception>
    public static IReadOnlyList<string> ResolveAllInside(string root, IReadOnlyList<string> relativePaths, string paramName = "relativePaths",
        string? memberName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        ArgumentNullException.ThrowIfNull(relativePaths);
        string Name(int i) => memberName is null ? $"{paramName}[{i}]" : $"{paramName}[{i}].{memberName}";
        for (var i = 0; i < relativePaths.Count; i++)
        {
            if (Check(relativePaths[i]) is { } reason)
            {
                throw new ArgumentException($"{Name(i)}: {reason}.", paramName);
            }
        }

        var fullRoot = Path.GetFullPath(root);
        string? realRoot = null;
        // Folders on the way already found to be no link, or a link that stays inside.
        var checkedFolders = new HashSet<string>(StringComparer.Ordinal);
        // An empty folder (a new job's) holds no link to pass through: one look at it instead of one per path.
        var empty = Directory.Exists(fullRoot) && !Directory.EnumerateFileSystemEntries(fullRoot).Any();
        var result = new string[relativePaths.Count];
        for (var i = 0; i < relativePaths.Count; i++)
        {
            result[i] = Walk(fullRoot, relativePaths[i], Name(i), paramName, ref realRoot, checkedFolders, empty);
        }

        return result;
    }

    /// <summary>
    /// Joins a checked relative path to <paramref name="fullRoot"/>, following every link on the way: one that leads out of
    /// the folder is refused. <paramref name="realRoot"/> is resolved at the first link met; folders in
    /// <paramref name="checkedFolders"/> are not looked at again (and those looked at are added); with
    /// <paramref name="noLinks"/> nothing is looked at.
    /// </summary>
    private static string Walk(string fullRoot, string relativePath, string name, string paramName, ref string? realRoot,
        HashSet<string>? checkedFolders, bool noLinks)
    {
        var segments = relativePath.Split('/', '\\', StringSplitOptions.RemoveEmptyEntries);
        var current = fullRoot;
        for (var k = 0; k < segments.Length; k++)
        {
            if (segments[k] == ".")
            {
                continue;
            }

            current = Path.Combine(current, segments[k]);
            var last = k == segments.Length - 1;
            if (noLinks || (!last && checkedFolders?.Contains(current) == true))
            {
                continue;
            }

            if (new FileInfo(current).LinkTarget is not null)
            {
                realRoot ??= RealPath(fullRoot);
                if (!IsWithin(realRoot, RealPath(current)))
                {
                    throw new ArgumentException($"{name}: '{relativePath}' passes through a link that leads out of the job folder.", paramName);
                }
            }

            if (!last)
            {
                checkedFolders?.Add(current);
            }
        }

        return current;
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="root"/> or inside it (both full paths).</summary>
    /// <param name="root">The folder.</param>
    /// <param name="path">The path to test.</param>
    /// <returns><see langword="true"/> when inside.</returns>
    public static bool IsWithin(string root, string path)
    {
        var normalizedRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        var normalizedPath = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        return normalizedPath.Equals(normalizedRoot, StringComparison.Ordinal)
            || normalizedPath.StartsWith(normalizedRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    private static string RealPath(string path)
    {
        // Resolve links component by component so a link inside a link is followed too.
        var full = Path.GetFullPath(path);
        var parts = full.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var current = Path.GetPathRoot(full) ?? "/";
        for (var hop = 0; hop < parts.Length; hop++)
        {
            var next = Path.Combine(current, parts[hop]);
            var info = new FileInfo(next);
            if (info.LinkTarget is not null)
            {
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                next = target is null ? next : Path.GetFullPath(target.FullName);
            }

            current = next;
        }

        return current;
    }

    /// <summary>
    /// Copies declared outputs from a job folder this machine can read (a local queue, a shared file system) into
    /// <paramref name="localFolder"/>, skipping files already there with the same content; each file is written to a
    /// temporary name and renamed, so a reader never sees half a file.
    /// </summary>
    /// <param name="jobFolder">The job folder.</param>
    /// <param name="outputs">Output paths relative to the job folder; those not present are skipped.</param>
    /// <param name="localFolder">Where to put them, at the same relative paths.</param>
    /// <param name="progress">Receives progress, or null.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The files written (not those already up to date).</returns>
    /// <exception cref="ArgumentException">An output path leaves the job folder or the local folder.</exception>
    public static async Task<IReadOnlyList<string>> CopyOutputsAsync(string jobFolder, IEnumerable<string> outputs, string localFolder,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        Directory.CreateDirectory(localFolder);
        var sources = outputs.Distinct(StringComparer.Ordinal)
            .Select(o => (Output: o, Source: ResolveInside(jobFolder, o, "output"))).Where(p => File.Exists(p.Source)).ToList();
        var total = sources.Sum(p => new FileInfo(p.Source).Length);
        var written = new List<string>();
        long done = 0;
        for (var i = 0; i < sources.Count; i++)
        {
            var (output, source) = sources[i];
            progress?.Report(new TransferProgress(done, total, i, sources.Count, output));
            var destination = ResolveInside(localFolder, output, "output");
            var size = new FileInfo(source).Length;
            if (!File.Exists(destination) || new FileInfo(destination).Length != size
                || await Hashing.ContentHash.ComputeFileAsync(destination, cancellationToken).ConfigureAwait(false)
                    != await Hashing.ContentHash.ComputeFileAsync(source, cancellationToken).ConfigureAwait(false))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                var temporary = destination + ".farm-partial";
                File.Copy(source, temporary, overwrite: true);
                File.Move(temporary, destination, overwrite: true);
                written.Add(destination);
            }

            done += size;
        }

        progress?.Report(new TransferProgress(done, total, sources.Count, sources.Count, null));
        return written;
    }
}

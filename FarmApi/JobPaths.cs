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

        var fullRoot = Path.GetFullPath(root);
        var realRoot = RealPath(fullRoot);
        var current = fullRoot;
        foreach (var segment in relativePath.Split('/', '\\', StringSplitOptions.RemoveEmptyEntries))
        {
            if (segment == ".")
            {
                continue;
            }

            current = Path.Combine(current, segment);
            var info = new FileInfo(current);
            if (info.LinkTarget is not null)
            {
                var target = RealPath(current);
                if (!IsWithin(realRoot, target))
                {
                    throw new ArgumentException($"{paramName}: '{relativePath}' passes through a link that leads out of the job folder.", paramName);
                }
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
}

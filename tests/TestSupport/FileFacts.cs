namespace FarmPlugins.TestSupport;

/// <summary>What tests ask the filesystem that .NET does not answer.</summary>
public static class FileFacts
{
    /// <summary>The number of names of a file's inode (<c>stat -c %h</c>): 2 or more when it is hard-linked.</summary>
    /// <param name="path">The file.</param>
    /// <returns>Its link count.</returns>
    public static long LinkCount(string path)
    {
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%h", path]) { RedirectStandardOutput = true })!;
        var text = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
            throw new TimeoutException($"stat {path} did not answer within 30 s.");
        }

        return long.Parse(text.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}

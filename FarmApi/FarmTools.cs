namespace FarmApi;

/// <summary>Finds the framework's own render-node tools (<c>farm-tools</c>: the tile merger and friends).</summary>
public static class FarmTools
{
    /// <summary>The host name adapters answer in <see cref="BaseFarmPlugin.GetInstallationMetadataAsync"/>.</summary>
    public const string HostName = "farm-tools";

    /// <summary>The executable's file name.</summary>
    public const string ExecutableName = "farm-tools";

    /// <summary>
    /// The farm-tools executable: <paramref name="configured"/> when set, else <c>FARM_TOOLS</c>, else
    /// <c>&lt;plug-in folder&gt;/../../Tools/FarmTools/farm-tools</c>, else <c>Tools/FarmTools/farm-tools</c> under each
    /// path of <c>FARM_RESOURCES</c>; null when none exists.
    /// </summary>
    /// <param name="configured">A path from the plug-in's settings, or null.</param>
    /// <param name="pluginAssemblyPath">The plug-in assembly's path, or null.</param>
    /// <returns>The full path, or null.</returns>
    public static string? Locate(string? configured = null, string? pluginAssemblyPath = null)
    {
        foreach (var candidate in Candidates(configured, pluginAssemblyPath))
        {
            if (File.Exists(candidate))
            {
                return Path.GetFullPath(candidate);
            }
        }

        return null;
    }

    private static IEnumerable<string> Candidates(string? configured, string? pluginAssemblyPath)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            yield return configured;
        }

        var fromEnvironment = Environment.GetEnvironmentVariable("FARM_TOOLS");
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            yield return fromEnvironment;
        }

        if (!string.IsNullOrWhiteSpace(pluginAssemblyPath))
        {
            var pluginFolder = Path.GetDirectoryName(Path.GetFullPath(pluginAssemblyPath))!;
            yield return Path.Combine(pluginFolder, "..", "..", "Tools", "FarmTools", ExecutableName);
        }

        var resources = Environment.GetEnvironmentVariable("FARM_RESOURCES") ?? string.Empty;
        foreach (var path in resources.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            yield return Path.Combine(path, "Tools", "FarmTools", ExecutableName);
        }
    }
}

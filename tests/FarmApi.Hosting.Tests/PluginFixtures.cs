using FarmPlugins.TestSupport;

namespace FarmApi.Hosting.Tests;

/// <summary>
/// The fixture plug-ins the test build placed in <c>fixtures/&lt;AssemblyName&gt;/</c> (see tests/Fixtures/README.md),
/// laid out into temporary resources paths as <c>&lt;path&gt;/Plugins/&lt;Folder&gt;/&lt;Folder&gt;.dll</c>.
/// </summary>
public sealed class ResourcesPath : IDisposable
{
    private readonly TempDir _dir = new("farm-resources");

    public string Path => _dir.Path;

    public static string FixturesRoot => System.IO.Path.Combine(AppContext.BaseDirectory, "fixtures");

    /// <summary>Copies a fixture's build output to <c>Plugins/&lt;fixture&gt;/</c>, leaving out the files named.</summary>
    public string Add(string fixture, params string[] except)
    {
        var source = System.IO.Path.Combine(FixturesRoot, fixture);
        if (!File.Exists(System.IO.Path.Combine(source, fixture + ".dll")))
        {
            throw new InvalidOperationException($"fixture {fixture} was not built into {source}: build tests/FarmApi.Hosting.Tests");
        }

        var target = PluginFolder(fixture);
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var relative = System.IO.Path.GetRelativePath(source, file);
            if (except.Contains(relative, StringComparer.Ordinal))
            {
                continue;
            }

            var destination = System.IO.Path.Combine(target, relative);
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }

        return AssemblyPath(fixture);
    }

    public string PluginFolder(string folder) => _dir.Combine("Plugins", folder);

    public string AssemblyPath(string folder) => System.IO.Path.Combine(PluginFolder(folder), folder + ".dll");

    /// <summary>Writes a file relative to the resources path.</summary>
    public string Write(string relative, string content) => _dir.WriteFile(relative, content);

    public void Dispose() => _dir.Dispose();
}

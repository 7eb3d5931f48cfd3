using System.Runtime.Loader;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace FarmApi.Hosting.Tests;

/// <summary>Managers over temporary resources paths, with an environment of the test's own (never the process's).</summary>
public abstract class HostingTestBase : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<IDisposable> _folders = [];

    protected HostingTestBase()
    {
        Data = Own(new TempDir("farm-data"));
        Environment = new Dictionary<string, string> { ["FARM_DATA"] = Data.Path };
        LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(builder => builder.SetMinimumLevel(LogLevel.Trace).AddProvider(Logs));
    }

    protected TempDir Data { get; }

    protected Dictionary<string, string> Environment { get; }

    protected FakeLoggerProvider Logs { get; } = new();

    protected ILoggerFactory LoggerFactory { get; }

    protected static RenderContext NewRender(string name = "render") => new(Guid.NewGuid(), RenderType.Disk, name);

    protected ResourcesPath NewResources() => Own(new ResourcesPath());

    protected T Own<T>(T disposable)
        where T : IDisposable
    {
        _folders.Add(disposable);
        return disposable;
    }

    /// <summary>A manager searching <paramref name="paths"/> in order, reading only <see cref="Environment"/>.</summary>
    protected FarmPluginManager NewManager(params ResourcesPath[] paths)
    {
        var options = new FarmPluginManagerOptions { Environment = Environment, LoggerFactory = LoggerFactory };
        foreach (var path in paths)
        {
            options.ResourcePaths.Add(path.Path);
        }

        var manager = new FarmPluginManager(options);
        _owned.Add(manager);
        return manager;
    }

    protected async Task<BaseFarmPlugin> LoadAsync(FarmPluginManager manager, string name, IReadOnlyDictionary<string, string>? overrides = null)
    {
        var plugin = await manager.LoadAsync(name, overrides);
        _owned.Insert(0, plugin);
        return plugin;
    }

    /// <summary>A one-task job, submitted through the public API and read back.</summary>
    protected static async Task<Job> SubmitOneTaskJobAsync(BaseFarmPlugin plugin, params string[] command)
    {
        var render = NewRender();
        var folder = await plugin.CreateTemporaryFolderAsync(render);
        var request = new JobRequest
        {
            Context = render,
            Name = "one task",
            TemporaryFolder = folder,
            Tasks = [new TaskSpec("t1", [Command.Of(command.Length == 0 ? "true" : command[0], command.Skip(1).ToArray())])],
        };
        var id = await plugin.SubmitJobAsync(request);
        return await plugin.GetJobAsync(id);
    }

    protected static bool IsLoadedAnywhere(string assemblyPath) =>
        AssemblyLoadContext.All.SelectMany(c => c.Assemblies).Any(a => !a.IsDynamic && string.Equals(a.Location, assemblyPath, StringComparison.Ordinal));

    public async ValueTask DisposeAsync()
    {
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync();
        }

        foreach (var folder in _folders)
        {
            folder.Dispose();
        }

        LoggerFactory.Dispose();
        Logs.Dispose();
        GC.SuppressFinalize(this);
    }
}

using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmPlugins.LocalQueue.Tests;

/// <summary>A private LocalQueue data directory with short timings; every agent it caused is killed by pid at the end.</summary>
public sealed class LocalQueueFarm : IAsyncDisposable
{
    private readonly TempDir _dir = new("localqueue");
    private readonly List<BaseFarmPlugin> _plugins = [];

    public string DataDirectory => _dir.Path;

    public Dictionary<string, string> Settings { get; } = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Agents"] = "2",
        ["IdleSeconds"] = "20",
        ["HeartbeatSeconds"] = "0.5",
        ["LeaseSeconds"] = "10",
        ["PollMilliseconds"] = "500",
    };

    /// <summary>The LocalQueue plug-in build's own folder, which carries the agent's runtimeconfig.</summary>
    public static string AgentAssembly
    {
        get
        {
            var local = Path.Combine(AppContext.BaseDirectory, "FarmPlugins.LocalQueue.dll");
            return local;
        }
    }

    public async Task<BaseFarmPlugin> NewPluginAsync(CancellationToken cancellationToken = default)
    {
        var plugin = new LocalQueuePlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "LocalQueue",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string>(Settings, StringComparer.OrdinalIgnoreCase),
            DataDirectory = _dir.Path,
        }, cancellationToken);
        lock (_plugins)
        {
            _plugins.Add(plugin);
        }

        return plugin;
    }

    /// <summary>A task of one <c>/bin/sh -c</c> command.</summary>
    public static TaskSpec Sh(string id, string script, string[]? dependsOn = null, string[]? outputs = null, TimeSpan? timeout = null) =>
        new(id, [Command.Of("/bin/sh", "-c", script)], dependsOn, outputs, Timeout: timeout);

    /// <summary>Submits a one-folder job of <paramref name="tasks"/> through a new plug-in instance; returns its id.</summary>
    public async Task<string> SubmitAsync(IReadOnlyList<TaskSpec> tasks, int maxAttempts = 1, string name = "test")
    {
        var plugin = await NewPluginAsync();
        var context = RenderContext.Create(name);
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        return await plugin.SubmitJobAsync(new JobRequest { Context = context, Name = name, Tasks = tasks, TemporaryFolder = folder, MaxAttempts = maxAttempts });
    }

    /// <summary>Waits (up to <paramref name="timeout"/>) until a fresh plug-in instance reads the job as ended.</summary>
    public async Task<Job> WaitTerminalAsync(string jobId, TimeSpan timeout)
    {
        Job? job = null;
        await Eventually.WaitAsync(async () =>
        {
            job = await (await NewPluginAsync()).GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, timeout, $"job {jobId} to end", TimeSpan.FromMilliseconds(300));
        return job!;
    }

    public void KillAgents()
    {
        foreach (var pid in LocalQueuePlugin.AgentProcessIds(_dir.Path))
        {
            ProcessTracker.Kill(pid);
        }
    }

    public async ValueTask DisposeAsync()
    {
        KillAgents();
        foreach (var plugin in _plugins)
        {
            await plugin.DisposeAsync();
        }

        // Agents that had not written their pid file yet are found through the database.
        await Task.Delay(200);
        KillAgents();
        _dir.Dispose();
    }
}

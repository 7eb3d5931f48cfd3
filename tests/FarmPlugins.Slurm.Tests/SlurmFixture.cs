using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.Slurm.Tests;

/// <summary>The one private Slurm cluster every test of the assembly shares (it starts once, in about a second).</summary>
[CollectionDefinition(Name)]
public sealed class SlurmCollection : ICollectionFixture<SlurmFixture>
{
    public const string Name = "slurm";
}

/// <summary>Starts the cluster, makes adapter instances configured for it, and stops everything at the end.</summary>
public sealed class SlurmFixture : IAsyncLifetime
{
    private readonly List<BaseFarmPlugin> _plugins = [];
    private readonly TempDir _dir = new("slurm-farm");

    /// <summary>Small on purpose: a job of more than 8 tasks is split into several arrays.</summary>
    public const int MaxArraySize = 8;

    public SlurmCluster Cluster { get; private set; } = null!;

    /// <summary>The shared filesystem of the cluster: a local folder, as the only node is this machine.</summary>
    public string SharedRoot => _dir.Combine("shared");

    /// <summary>"This workstation"'s data directory.</summary>
    public string WorkstationData => _dir.Combine("workstation");

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string FarmToolsExecutable => Path.Combine(RepoRoot, "out", "resources", "Tools", "FarmTools", FarmTools.ExecutableName);

    public async Task InitializeAsync()
    {
        if (Components.IsSkipped(Components.Slurm))
        {
            return;
        }

        // More CPUs than the machine has: the tests' tasks mostly sleep, and four slots keep the suite short.
        Cluster = await SlurmCluster.StartAsync(new SlurmClusterOptions { Cpus = 4, MaxArraySize = MaxArraySize });
    }

    public Dictionary<string, string> Settings() => new(StringComparer.OrdinalIgnoreCase)
    {
        ["SharedRoot"] = SharedRoot,
        ["SlurmConf"] = Cluster.ConfFile,
        ["CommandTimeoutSeconds"] = "30",
        ["StopWaitSeconds"] = "15",
        ["FarmTools"] = FarmToolsExecutable,
    };

    public async Task<SlurmPlugin> NewPluginAsync(Action<Dictionary<string, string>>? configure = null, CancellationToken cancellationToken = default)
    {
        var settings = Settings();
        configure?.Invoke(settings);
        var plugin = new SlurmPlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "Slurm",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = settings,
            DataDirectory = WorkstationData,
        }, cancellationToken);
        lock (_plugins)
        {
            _plugins.Add(plugin);
        }

        return plugin;
    }

    public async Task DisposeAsync()
    {
        foreach (var plugin in _plugins)
        {
            await plugin.DisposeAsync();
        }

        if (Cluster is not null)
        {
            await Cluster.DisposeAsync();
        }

        _dir.Dispose();
    }

    private static string FindRepoRoot()
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "FarmPlugins.sln")))
        {
            folder = folder.Parent;
        }

        return folder?.FullName ?? throw new InvalidOperationException("FarmPlugins.sln was not found above " + AppContext.BaseDirectory);
    }
}

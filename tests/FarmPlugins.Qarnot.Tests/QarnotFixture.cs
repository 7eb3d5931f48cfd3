using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>One real S3 server and one Qarnot emulator for every test of the assembly.</summary>
public sealed class QarnotFixture : IAsyncLifetime
{
    private readonly List<BaseFarmPlugin> _plugins = [];

    public QarnotFixture()
    {
        Root = new TempDir("qarnot");
        WorkstationData = Root.Combine("workstation");
    }

    /// <summary>A fresh token per run, so a leak into a message is easy to find.</summary>
    public string Token { get; } = "qtok-" + Guid.NewGuid().ToString("N");

    public string Email { get; } = "render-tests@studio.example";

    public TempDir Root { get; }

    /// <summary>The data directory of "this workstation": every plug-in instance of a test shares it unless told otherwise.</summary>
    public string WorkstationData { get; }

    public S3rverServer S3 { get; private set; } = null!;

    public QarnotEmulator Emulator { get; private set; } = null!;

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string FarmToolsExecutable => Path.Combine(RepoRoot, "out", "resources", "Tools", "FarmTools", FarmTools.ExecutableName);

    public async Task InitializeAsync()
    {
        if (Components.IsSkipped(Components.S3))
        {
            return;
        }

        S3 = await S3rverServer.StartAsync([(Email, Token)]);
        Emulator = new QarnotEmulator(S3.Url, Token, Email, Root.Combine("nodes"));
        await Emulator.StartAsync();
    }

    public Dictionary<string, string> Settings() => new(StringComparer.OrdinalIgnoreCase)
    {
        ["Token"] = Token,
        ["ApiUrl"] = Emulator.Url.AbsoluteUri,
        ["BucketPrefix"] = "farmtests",
        ["Retries"] = "4",
        ["RetryDelayMilliseconds"] = "20",
        ["FarmTools"] = FarmToolsExecutable,
    };

    public async Task<QarnotPlugin> NewPluginAsync(string? dataDirectory = null, Action<Dictionary<string, string>>? configure = null,
        CancellationToken cancellationToken = default, ILoggerFactory? loggerFactory = null)
    {
        var settings = Settings();
        configure?.Invoke(settings);
        var plugin = new QarnotPlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "Qarnot",
            LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance,
            Settings = settings,
            DataDirectory = dataDirectory ?? WorkstationData,
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

        if (Emulator is not null)
        {
            await Emulator.DisposeAsync();
        }

        if (S3 is not null)
        {
            await S3.DisposeAsync();
        }

        Root.Dispose();
    }

    private static string FindRepoRoot()
    {
        var folder = AppContext.BaseDirectory;
        while (folder is not null && !File.Exists(Path.Combine(folder, "FarmPlugins.sln")))
        {
            folder = Path.GetDirectoryName(folder);
        }

        return folder ?? throw new InvalidOperationException("FarmPlugins.sln not found above " + AppContext.BaseDirectory);
    }
}

[CollectionDefinition(Name)]
public sealed class QarnotCollection : ICollectionFixture<QarnotFixture>
{
    public const string Name = "Qarnot";
}


namespace FarmApi.Hosting;

/// <summary>
/// Discovers farm plug-ins on resources paths (<c>FARM_RESOURCES</c> first, then the host's own), lists them from
/// metadata only, and loads each in its own load context sharing only FarmApi and the logging abstractions.
/// </summary>
public sealed class FarmPluginManager : IAsyncDisposable
{
    /// <summary>Makes a manager; discovery happens on first use.</summary>
    /// <param name="options">Where to look and how to configure plug-ins.</param>
    public FarmPluginManager(FarmPluginManagerOptions? options = null)
    {
        Options = options ?? new FarmPluginManagerOptions();
    }

    /// <summary>The options.</summary>
    public FarmPluginManagerOptions Options { get; }

    /// <summary>The resources paths searched, in order.</summary>
    public IReadOnlyList<string> ResourcePaths => throw new NotImplementedException("FarmPluginManager lands with the manager work.");

    /// <summary>Every plug-in found, broken ones included, in path order. Runs no plug-in code.</summary>
    /// <returns>The plug-ins.</returns>
    public IReadOnlyList<FarmPluginInfo> GetPlugins() => throw new NotImplementedException();

    /// <summary>The problems found during discovery.</summary>
    public IReadOnlyList<FarmPluginDiagnostic> Diagnostics => throw new NotImplementedException();

    /// <summary>The available plug-in with this name (case-insensitive), or null.</summary>
    /// <param name="name">The name.</param>
    /// <returns>The plug-in, or null.</returns>
    public FarmPluginInfo? Find(string name) => throw new NotImplementedException();

    /// <summary>Constructs and initializes the plug-in <paramref name="name"/> with its merged settings.</summary>
    /// <param name="name">The plug-in's name, case-insensitive.</param>
    /// <param name="overrides">The host's explicit settings (<c>farm --set</c>), applied last.</param>
    /// <param name="cancellationToken">Cancels the initialization.</param>
    /// <returns>The initialized plug-in; the caller disposes it.</returns>
    /// <exception cref="FarmPluginException">No plug-in has this name; the message lists the available ones.</exception>
    /// <exception cref="FarmPluginLoadException">It cannot be loaded, constructed or initialized.</exception>
    public Task<BaseFarmPlugin> LoadAsync(string name, IReadOnlyDictionary<string, string>? overrides = null,
        CancellationToken cancellationToken = default) => throw new NotImplementedException();

    /// <summary>The merged settings of a plug-in with where each came from; secrets masked. Loads the plug-in to read its descriptors.</summary>
    /// <param name="name">The plug-in's name.</param>
    /// <param name="overrides">The host's explicit settings.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settings, declared ones first.</returns>
    public Task<IReadOnlyList<EffectiveSetting>> GetEffectiveSettingsAsync(string name, IReadOnlyDictionary<string, string>? overrides = null,
        CancellationToken cancellationToken = default) => throw new NotImplementedException();

    /// <summary>The data directory of a plug-in: <c>$FARM_DATA/&lt;name&gt;</c>, else <c>$XDG_DATA_HOME/farmplugins/&lt;name&gt;</c>, else <c>~/.local/share/farmplugins/&lt;name&gt;</c>.</summary>
    /// <param name="name">The plug-in's name.</param>
    /// <returns>The folder (not created).</returns>
    public string GetDataDirectory(string name) => throw new NotImplementedException();

    /// <summary>Unloads what was loaded.</summary>
    /// <returns>A task.</returns>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

using System.Reflection;
using System.Text.Json;
using McMaster.NETCore.Plugins;
using Microsoft.Extensions.Logging;

namespace FarmApi.Hosting;

/// <summary>
/// Discovers farm plug-ins on resources paths (<c>FARM_RESOURCES</c> first, then the host's own), lists them from
/// metadata only, and loads each in its own load context sharing only FarmApi and the logging abstractions.
/// </summary>
public sealed class FarmPluginManager : IAsyncDisposable
{
    private static readonly Type[] SharedTypes = [typeof(BaseFarmPlugin), typeof(ILogger), typeof(ILoggerFactory)];

    private readonly object _gate = new();
    private readonly Dictionary<string, PluginLoader> _loaders = new(StringComparer.Ordinal);
    private readonly ILogger _logger;
    private Discovery? _discovery;

    /// <summary>Makes a manager; discovery happens on first use.</summary>
    /// <param name="options">Where to look and how to configure plug-ins.</param>
    public FarmPluginManager(FarmPluginManagerOptions? options = null)
    {
        Options = options ?? new FarmPluginManagerOptions();
        _logger = Options.LoggerFactory.CreateLogger<FarmPluginManager>();
    }

    /// <summary>The options.</summary>
    public FarmPluginManagerOptions Options { get; }

    /// <summary>The resources paths searched, in order.</summary>
    public IReadOnlyList<string> ResourcePaths => Discover().Paths;

    /// <summary>The problems found during discovery.</summary>
    public IReadOnlyList<FarmPluginDiagnostic> Diagnostics => Discover().Diagnostics;

    /// <summary>Every plug-in found, broken ones included, in path order. Runs no plug-in code.</summary>
    /// <returns>The plug-ins.</returns>
    public IReadOnlyList<FarmPluginInfo> GetPlugins() => Discover().Plugins;

    /// <summary>The available plug-in with this name (case-insensitive), or null.</summary>
    /// <param name="name">The name.</param>
    /// <returns>The plug-in, or null.</returns>
    public FarmPluginInfo? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Discover().Plugins.FirstOrDefault(p => p.Status == FarmPluginStatus.Available
            && string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Constructs and initializes the plug-in <paramref name="name"/> with its merged settings.</summary>
    /// <param name="name">The plug-in's name, case-insensitive.</param>
    /// <param name="overrides">The host's explicit settings (<c>farm --set</c>), applied last.</param>
    /// <param name="cancellationToken">Cancels the initialization.</param>
    /// <returns>The initialized plug-in; the caller disposes it.</returns>
    /// <exception cref="FarmPluginException">No plug-in has this name; the message lists the available ones.</exception>
    /// <exception cref="FarmPluginLoadException">It cannot be loaded, constructed or initialized.</exception>
    public async Task<BaseFarmPlugin> LoadAsync(string name, IReadOnlyDictionary<string, string>? overrides = null,
        CancellationToken cancellationToken = default)
    {
        var info = Resolve(name);
        var plugin = Construct(info);
        try
        {
            var settings = MergeSettings(info, plugin.GetSettingDescriptors(), overrides, out _);
            var dataDirectory = GetDataDirectory(info.Name);
            Directory.CreateDirectory(dataDirectory);
            var context = new FarmPluginContext
            {
                PluginName = info.Name,
                LoggerFactory = Options.LoggerFactory,
                Settings = settings,
                DataDirectory = dataDirectory,
                TimeProvider = Options.TimeProvider,
            };
            await plugin.InitializeAsync(context, cancellationToken).ConfigureAwait(false);
            Log.PluginLoaded(_logger, info.Name, info.AssemblyPath);
            return plugin;
        }
        catch (OperationCanceledException)
        {
            await plugin.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        catch (FarmPluginLoadException)
        {
            await plugin.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        catch (Exception ex)
        {
            await plugin.DisposeAsync().ConfigureAwait(false);
            throw new FarmPluginLoadException(info.AssemblyPath, $"plug-in '{info.Name}' failed to initialize: {Unwrap(ex).Message}", ex);
        }
    }

    /// <summary>The merged settings of a plug-in with where each came from; secrets masked. Constructs the plug-in to read its descriptors (it is not initialized).</summary>
    /// <param name="name">The plug-in's name.</param>
    /// <param name="overrides">The host's explicit settings.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settings, declared ones first.</returns>
    public async Task<IReadOnlyList<EffectiveSetting>> GetEffectiveSettingsAsync(string name, IReadOnlyDictionary<string, string>? overrides = null,
        CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var info = Resolve(name);
        var plugin = Construct(info);
        await using (plugin.ConfigureAwait(false))
        {
            var descriptors = plugin.GetSettingDescriptors();
            var settings = MergeSettings(info, descriptors, overrides, out var sources);
            var result = new List<EffectiveSetting>();
            var listed = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var descriptor in descriptors)
            {
                listed.Add(descriptor.Name);
                if (settings.TryGetValue(descriptor.Name, out var value))
                {
                    result.Add(new EffectiveSetting(descriptor.Name, descriptor.IsSecret ? SecretRedactor.Mask : value,
                        sources[descriptor.Name], descriptor.IsSecret, descriptor.Description));
                }
                else
                {
                    var shown = descriptor.DefaultValue is null ? string.Empty : descriptor.IsSecret ? SecretRedactor.Mask : descriptor.DefaultValue;
                    result.Add(new EffectiveSetting(descriptor.Name, shown, "default", descriptor.IsSecret, descriptor.Description));
                }
            }

            foreach (var (key, value) in settings.OrderBy(p => p.Key, StringComparer.OrdinalIgnoreCase))
            {
                if (listed.Add(key))
                {
                    result.Add(new EffectiveSetting(key, value, sources[key], false));
                }
            }

            return result;
        }
    }

    /// <summary>The data directory of a plug-in: <c>$FARM_DATA/&lt;name&gt;</c>, else <c>$XDG_DATA_HOME/farmplugins/&lt;name&gt;</c>, else <c>~/.local/share/farmplugins/&lt;name&gt;</c>.</summary>
    /// <param name="name">The plug-in's name.</param>
    /// <returns>The folder (not created).</returns>
    public string GetDataDirectory(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var safe = new string(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray()).Trim('.');
        if (safe.Length == 0)
        {
            safe = "plugin";
        }

        var farmData = GetEnvironment("FARM_DATA");
        if (!string.IsNullOrWhiteSpace(farmData))
        {
            return Path.Combine(farmData, safe);
        }

        var xdg = GetEnvironment("XDG_DATA_HOME");
        if (!string.IsNullOrWhiteSpace(xdg))
        {
            return Path.Combine(xdg, "farmplugins", safe);
        }

        var home = GetEnvironment("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home, ".local", "share", "farmplugins", safe);
    }

    /// <summary>Unloads what was loaded.</summary>
    /// <returns>A task.</returns>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            foreach (var loader in _loaders.Values)
            {
                loader.Dispose();
            }

            _loaders.Clear();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>The environment-variable prefix of a plug-in's settings: <c>FARM_&lt;NAME&gt;_</c>.</summary>
    /// <param name="pluginName">The plug-in's name.</param>
    /// <returns>The prefix.</returns>
    public static string EnvironmentPrefix(string pluginName) => $"FARM_{Normalize(pluginName)}_";

    private static string Normalize(string text) =>
        new(text.Select(c => char.IsAsciiLetterOrDigit(c) ? char.ToUpperInvariant(c) : '_').ToArray());

    private static Exception Unwrap(Exception exception)
    {
        while (exception is TargetInvocationException { InnerException: { } inner })
        {
            exception = inner;
        }

        return exception;
    }

    private FarmPluginInfo Resolve(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var discovery = Discover();
        var available = Find(name);
        if (available is not null)
        {
            return available;
        }

        var other = discovery.Plugins.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
        if (other is not null)
        {
            throw new FarmPluginLoadException(other.AssemblyPath, other.Error ?? $"plug-in '{other.Name}' is {other.Status}");
        }

        var names = discovery.Plugins.Where(p => p.Status == FarmPluginStatus.Available).Select(p => p.Name).ToList();
        var list = names.Count == 0
            ? $"no plug-in was found on the resources paths ({(discovery.Paths.Count == 0 ? "none: set FARM_RESOURCES" : string.Join(Path.PathSeparator, discovery.Paths))})"
            : $"available: {string.Join(", ", names)}";
        throw new FarmPluginException($"Unknown plug-in '{name}': {list}.");
    }

    private BaseFarmPlugin Construct(FarmPluginInfo info)
    {
        PluginLoader loader;
        lock (_gate)
        {
            if (!_loaders.TryGetValue(info.AssemblyPath, out loader!))
            {
                try
                {
                    // Only FarmApi and the logging abstractions (and what they reference) come from the host; everything
                    // else the plug-in carries is its own, even where the host has another version of the same library.
                    // (PreferSharedTypes would hand a plug-in the host's copy of any assembly the host can resolve.)
                    loader = PluginLoader.CreateFromAssemblyFile(info.AssemblyPath, SharedTypes, config => config.PreferSharedTypes = false);
                }
                catch (Exception ex)
                {
                    throw new FarmPluginLoadException(info.AssemblyPath, $"cannot create a load context: {ex.Message}", ex);
                }

                _loaders[info.AssemblyPath] = loader;
            }
        }

        Type? type;
        try
        {
            var assembly = loader.LoadDefaultAssembly();
            type = assembly.GetType(info.TypeName, throwOnError: false);
        }
        catch (Exception ex) when (ex is FileNotFoundException or FileLoadException or BadImageFormatException or TypeLoadException or ReflectionTypeLoadException)
        {
            throw new FarmPluginLoadException(info.AssemblyPath, $"cannot load plug-in '{info.Name}': {ex.Message}", ex);
        }

        if (type is null)
        {
            throw new FarmPluginLoadException(info.AssemblyPath, $"type '{info.TypeName}' named by plug-in '{info.Name}' is not in the assembly");
        }

        if (!typeof(BaseFarmPlugin).IsAssignableFrom(type))
        {
            throw new FarmPluginLoadException(info.AssemblyPath, $"'{type.FullName}' does not derive from FarmApi.BaseFarmPlugin");
        }

        if (type.IsAbstract)
        {
            throw new FarmPluginLoadException(info.AssemblyPath, $"'{type.FullName}' is abstract");
        }

        if (!type.IsPublic || type.GetConstructor(Type.EmptyTypes) is null)
        {
            throw new FarmPluginLoadException(info.AssemblyPath, $"'{type.FullName}' needs to be public with a public parameterless constructor");
        }

        try
        {
            return (BaseFarmPlugin)Activator.CreateInstance(type)!;
        }
        catch (Exception ex)
        {
            var cause = Unwrap(ex);
            throw new FarmPluginLoadException(info.AssemblyPath, $"the constructor of '{type.FullName}' threw {cause.GetType().Name}: {cause.Message}", cause);
        }
    }

    private Dictionary<string, string> MergeSettings(FarmPluginInfo info, IReadOnlyList<SettingDescriptor> descriptors,
        IReadOnlyDictionary<string, string>? overrides, out Dictionary<string, string> sources)
    {
        var settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        sources = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var pluginSettings = Path.Combine(Path.GetDirectoryName(info.AssemblyPath)!, "settings.json");
        Apply(settings, sources, ReadSettingsFile(pluginSettings), pluginSettings);
        var paths = Discover().Paths;
        for (var i = paths.Count - 1; i >= 0; i--)
        {
            // The first resources path wins, as with PATH.
            var file = Path.Combine(paths[i], "Settings", info.Name + ".json");
            Apply(settings, sources, ReadSettingsFile(file), file);
        }

        if (Options.UseEnvironment)
        {
            var prefix = EnvironmentPrefix(info.Name);
            var declared = descriptors.ToDictionary(d => Normalize(d.Name), d => d.Name, StringComparer.Ordinal);
            foreach (var (variable, value) in EnvironmentVariables())
            {
                if (variable.Length > prefix.Length && variable.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                {
                    var rawKey = variable[prefix.Length..];
                    var key = declared.TryGetValue(Normalize(rawKey), out var declaredName) ? declaredName : rawKey;
                    settings[key] = value;
                    sources[key] = variable;
                }
            }
        }

        foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
        {
            if (!string.IsNullOrWhiteSpace(key))
            {
                settings[key] = value;
                sources[key] = "override";
            }
        }

        return settings;
    }

    private static void Apply(Dictionary<string, string> settings, Dictionary<string, string> sources, IReadOnlyDictionary<string, string> values, string source)
    {
        foreach (var (key, value) in values)
        {
            settings[key] = value;
            sources[key] = source;
        }
    }

    private static Dictionary<string, string> ReadSettingsFile(string path)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (!File.Exists(path))
        {
            return result;
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FarmPluginException($"Settings file {path} must hold a JSON object of settings.");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                result[property.Name] = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString()!,
                    JsonValueKind.Null => string.Empty,
                    JsonValueKind.Object or JsonValueKind.Array => property.Value.GetRawText(),
                    _ => property.Value.GetRawText(),
                };
            }

            return result;
        }
        catch (JsonException ex)
        {
            throw new FarmPluginException($"Settings file {path} is not valid JSON: {ex.Message}", ex);
        }
        catch (IOException ex)
        {
            throw new FarmPluginException($"Settings file {path} cannot be read: {ex.Message}", ex);
        }
    }

    private string? GetEnvironment(string name)
    {
        if (!Options.UseEnvironment)
        {
            return null;
        }

        if (Options.Environment is { } environment)
        {
            return environment.TryGetValue(name, out var value) ? value : null;
        }

        return Environment.GetEnvironmentVariable(name);
    }

    private IEnumerable<KeyValuePair<string, string>> EnvironmentVariables()
    {
        if (Options.Environment is { } environment)
        {
            return environment;
        }

        return Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => new KeyValuePair<string, string>((string)e.Key, (string?)e.Value ?? string.Empty));
    }

    private Discovery Discover()
    {
        lock (_gate)
        {
            return _discovery ??= RunDiscovery();
        }
    }

    private Discovery RunDiscovery()
    {
        var paths = new List<string>();
        var separator = OperatingSystem.IsWindows() ? ';' : ':';
        var fromEnvironment = GetEnvironment("FARM_RESOURCES") ?? string.Empty;
        foreach (var path in fromEnvironment.Split(separator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Concat(Options.ResourcePaths))
        {
            var full = Path.GetFullPath(path);
            if (!paths.Contains(full, StringComparer.Ordinal))
            {
                paths.Add(full);
            }
        }

        var plugins = new List<FarmPluginInfo>();
        var diagnostics = new List<FarmPluginDiagnostic>();
        var hostFarmApi = typeof(BaseFarmPlugin).Assembly.GetName().Version ?? new Version(FarmApiInfo.ApiMajorVersion, 0);
        foreach (var resources in paths)
        {
            var pluginsFolder = Path.Combine(resources, "Plugins");
            if (!Directory.Exists(pluginsFolder))
            {
                Log.NoPluginsFolder(_logger, resources);
                continue;
            }

            foreach (var folder in Directory.GetDirectories(pluginsFolder).Order(StringComparer.Ordinal))
            {
                var folderName = Path.GetFileName(folder);
                var assemblyPath = Path.Combine(folder, folderName + ".dll");
                if (!File.Exists(assemblyPath))
                {
                    diagnostics.Add(new FarmPluginDiagnostic(folder, $"no {folderName}.dll in the plug-in folder (a plug-in folder holds <Folder>/<Folder>.dll)"));
                    continue;
                }

                var registrations = PluginMetadataReader.Read(assemblyPath, out var error);
                foreach (var found in registrations)
                {
                    var status = FarmPluginStatus.Available;
                    string? reason = null;
                    if (!TryMajor(found.ApiVersion, out var apiMajor) || apiMajor != FarmApiInfo.ApiMajorVersion)
                    {
                        status = FarmPluginStatus.Incompatible;
                        reason = $"written for plug-in API {found.ApiVersion}; this host implements {FarmApiInfo.ApiVersion}";
                    }
                    else if (found.FarmApiVersion is { } referenced && referenced.Major != hostFarmApi.Major)
                    {
                        status = FarmPluginStatus.Incompatible;
                        reason = $"built against FarmApi {referenced.ToString(3)}; this host has FarmApi {hostFarmApi.ToString(3)}";
                    }
                    else if (found.FarmApiVersion is { } newer && (newer.Major, newer.Minor).CompareTo((hostFarmApi.Major, hostFarmApi.Minor)) > 0)
                    {
                        // Same major, later minor: the plug-in may call members this host's FarmApi does not have yet (a
                        // MissingMethodException in the middle of a render otherwise).
                        status = FarmPluginStatus.Incompatible;
                        reason = $"built against FarmApi {newer.ToString(3)}, newer than this host's FarmApi {hostFarmApi.ToString(3)}: update the host, or use a build of the plug-in for FarmApi {hostFarmApi.ToString(2)}";
                    }
                    else if (found.FarmApiVersion is null)
                    {
                        status = FarmPluginStatus.Broken;
                        reason = "the assembly does not reference FarmApi";
                    }
                    else if (found.MissingDependencies.Count > 0)
                    {
                        status = FarmPluginStatus.Broken;
                        reason = $"missing dependency {string.Join(", ", found.MissingDependencies)} (not in {folder})";
                    }
                    else if (found.TypeError is not null)
                    {
                        status = FarmPluginStatus.Broken;
                        reason = found.TypeError;
                    }
                    else if (plugins.FirstOrDefault(p => p.Status == FarmPluginStatus.Available
                        && string.Equals(p.Name, found.Name, StringComparison.OrdinalIgnoreCase)) is { } first)
                    {
                        status = FarmPluginStatus.Duplicate;
                        reason = $"plug-in '{found.Name}' is already provided by {first.AssemblyPath}, which comes first on the resources paths";
                    }

                    plugins.Add(new FarmPluginInfo(found.Name, found.ApiVersion, assemblyPath, found.TypeName, status, reason, resources,
                        found.Description, found.FarmApiVersion));
                    if (reason is not null)
                    {
                        diagnostics.Add(new FarmPluginDiagnostic(assemblyPath, reason, found.Name));
                        Log.PluginDiagnostic(_logger, assemblyPath, reason);
                    }
                }

                if (error is not null)
                {
                    plugins.Add(new FarmPluginInfo(folderName, string.Empty, assemblyPath, string.Empty, FarmPluginStatus.Broken, error, resources));
                    diagnostics.Add(new FarmPluginDiagnostic(assemblyPath, error));
                    Log.PluginDiagnostic(_logger, assemblyPath, error);
                }
            }
        }

        return new Discovery(paths, plugins, diagnostics);
    }

    private static bool TryMajor(string version, out int major)
    {
        major = 0;
        var head = version.Split('.')[0];
        return int.TryParse(head, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out major);
    }

    private sealed record Discovery(IReadOnlyList<string> Paths, IReadOnlyList<FarmPluginInfo> Plugins, IReadOnlyList<FarmPluginDiagnostic> Diagnostics);
}

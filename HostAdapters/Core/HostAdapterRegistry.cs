namespace FarmPlugins.Hosts;

/// <summary>The host adapters a host application offers, found by name or by a scene's extension.</summary>
/// <param name="adapters">The adapters; the first one wins when two claim an extension.</param>
public sealed class HostAdapterRegistry(IEnumerable<IHostAdapter> adapters)
{
    private readonly IReadOnlyList<IHostAdapter> _adapters = [.. adapters];

    /// <summary>Every adapter.</summary>
    public IReadOnlyList<IHostAdapter> Adapters => _adapters;

    /// <summary>The adapter for a scene file, by its extension.</summary>
    /// <param name="scenePath">The scene.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="ArgumentException">No adapter renders that extension (the message lists those that exist).</exception>
    public IHostAdapter ForScene(string scenePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(scenePath);
        var extension = Path.GetExtension(scenePath).ToLowerInvariant();
        return _adapters.FirstOrDefault(a => a.Extensions.Contains(extension, StringComparer.OrdinalIgnoreCase))
            ?? throw new ArgumentException(
                $"scene: no host adapter renders '{extension}' files; known: {string.Join(", ", _adapters.SelectMany(a => a.Extensions))}.",
                nameof(scenePath));
    }

    /// <summary>The adapter with this name (case-insensitive).</summary>
    /// <param name="name">For example <c>povray</c>.</param>
    /// <returns>The adapter.</returns>
    /// <exception cref="ArgumentException">None has that name.</exception>
    public IHostAdapter ForName(string name) =>
        _adapters.FirstOrDefault(a => string.Equals(a.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"host: no host adapter named '{name}'; known: {string.Join(", ", _adapters.Select(a => a.Name))}.", nameof(name));
}

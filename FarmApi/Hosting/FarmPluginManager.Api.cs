// The public surface of FarmApi.Hosting, fixed first so hosts (the CLI) can compile against it while the
// implementation lands. Implementation: FarmPluginManager.cs.
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmApi.Hosting;

/// <summary>How a <see cref="FarmPluginManager"/> finds and configures plug-ins.</summary>
public sealed class FarmPluginManagerOptions
{
    /// <summary>The host's own resources paths, searched after those of <c>FARM_RESOURCES</c>.</summary>
    public IList<string> ResourcePaths { get; } = new List<string>();

    /// <summary>Whether to read <c>FARM_RESOURCES</c>, <c>FARM_DATA</c> and <c>FARM_&lt;NAME&gt;_&lt;KEY&gt;</c> variables. True by default.</summary>
    public bool UseEnvironment { get; set; } = true;

    /// <summary>The environment to read; the process's when null (tests pass their own).</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; set; }

    /// <summary>Where plug-ins log.</summary>
    public ILoggerFactory LoggerFactory { get; set; } = NullLoggerFactory.Instance;

    /// <summary>The clock handed to plug-ins.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
}

/// <summary>Whether a discovered plug-in can be loaded.</summary>
public enum FarmPluginStatus
{
    /// <summary>It can be loaded.</summary>
    Available,

    /// <summary>It cannot be loaded: see <see cref="FarmPluginInfo.Error"/>.</summary>
    Broken,

    /// <summary>It was written for another API major.</summary>
    Incompatible,

    /// <summary>Another plug-in with the same name came first in path order.</summary>
    Duplicate,
}

/// <summary>A plug-in found on a resources path, read from metadata only.</summary>
/// <param name="Name">The registered name (the attribute's).</param>
/// <param name="ApiVersion">The attribute's API version.</param>
/// <param name="AssemblyPath">The plug-in assembly.</param>
/// <param name="TypeName">The plug-in class's full name.</param>
/// <param name="Status">Whether it can be loaded.</param>
/// <param name="Error">Why not, when it cannot.</param>
/// <param name="ResourcesPath">The resources path it was found under.</param>
/// <param name="Description">The attribute's description.</param>
/// <param name="FarmApiVersion">The version of the FarmApi assembly it references.</param>
public sealed record FarmPluginInfo(
    string Name,
    string ApiVersion,
    string AssemblyPath,
    string TypeName,
    FarmPluginStatus Status,
    string? Error,
    string ResourcesPath,
    string? Description = null,
    Version? FarmApiVersion = null);

/// <summary>A problem found during discovery: a broken, incompatible or duplicate plug-in.</summary>
/// <param name="Path">The file or folder concerned.</param>
/// <param name="Reason">What is wrong, for a person.</param>
/// <param name="PluginName">The plug-in's name, when it could be read.</param>
public sealed record FarmPluginDiagnostic(string Path, string Reason, string? PluginName = null);

/// <summary>One effective setting of a plug-in and where its value came from.</summary>
/// <param name="Key">The key.</param>
/// <param name="Value">The value; <c>***</c> for a secret.</param>
/// <param name="Source">Where it came from: a settings file's path, an environment variable's name, <c>override</c> or <c>default</c>.</param>
/// <param name="IsSecret">Whether the plug-in marks it secret.</param>
/// <param name="Description">The plug-in's description of it, when it declares it.</param>
public sealed record EffectiveSetting(string Key, string Value, string Source, bool IsSecret, string? Description = null);

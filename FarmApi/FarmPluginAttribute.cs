namespace FarmApi;

/// <summary>
/// Registers a farm plug-in of this assembly: the C# form of Katana's
/// <c>PluginRegistry = [("FarmPlugin", 2.0, "My Farm Plugin", MyFarmPlugin)]</c>.
/// </summary>
/// <example><code>[assembly: FarmApi.FarmPlugin(typeof(MyFarmPlugin), "My Farm Plugin", ApiVersion = "2.0")]</code></example>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class FarmPluginAttribute : Attribute
{
    /// <summary>Registers <paramref name="pluginType"/> under <paramref name="name"/>.</summary>
    /// <param name="pluginType">A public, non-abstract <see cref="BaseFarmPlugin"/> subclass with a public parameterless constructor.</param>
    /// <param name="name">The plug-in's name: what <c>--plugin</c> takes and what settings are keyed by.</param>
    public FarmPluginAttribute(Type pluginType, string name)
    {
        PluginType = pluginType;
        Name = name;
    }

    /// <summary>The plug-in class.</summary>
    public Type PluginType { get; }

    /// <summary>The plug-in's registered name.</summary>
    public string Name { get; }

    /// <summary>The plug-in API version it was written for, <c>major.minor</c>; the major must equal the host's.</summary>
    public string ApiVersion { get; set; } = FarmApiInfo.ApiVersion;

    /// <summary>A one-line description for listings.</summary>
    public string? Description { get; set; }
}

/// <summary>Facts about this version of the plug-in API.</summary>
public static class FarmApiInfo
{
    /// <summary>The plug-in API version this assembly implements.</summary>
    public const string ApiVersion = "2.0";

    /// <summary>The major of <see cref="ApiVersion"/>: plug-ins and hosts must agree on it.</summary>
    public const int ApiMajorVersion = 2;
}

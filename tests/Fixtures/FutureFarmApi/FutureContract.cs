namespace FarmApi;

/// <summary>The registration attribute, as FarmApi 3 might have it.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class FarmPluginAttribute(Type pluginType, string name) : Attribute
{
    public Type PluginType { get; } = pluginType;

    public string Name { get; } = name;

    public string ApiVersion { get; set; } = "3.0";
}

/// <summary>A base class whose contract changed in a way an API 2 host cannot call.</summary>
public abstract class BaseFarmPlugin
{
    public abstract Task<string> SubmitAsync(ReadOnlyMemory<byte> job, CancellationToken cancellationToken);
}

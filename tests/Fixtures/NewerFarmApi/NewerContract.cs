namespace FarmApi;

/// <summary>The registration attribute, as a later FarmApi 2 has it.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class FarmPluginAttribute(Type pluginType, string name) : Attribute
{
    public Type PluginType { get; } = pluginType;

    public string Name { get; } = name;

    public string ApiVersion { get; set; } = "2.0";
}

/// <summary>The base class, with a method this host's FarmApi does not have.</summary>
public abstract class BaseFarmPlugin
{
    public abstract Task<string> SubmitAsync(ReadOnlyMemory<byte> job, CancellationToken cancellationToken);

    public virtual Task<string> AMethodAddedLaterAsync() => Task.FromResult("later");
}

using FarmApi;
using FarmPlugins.Fixtures;

[assembly: FarmPlugin(typeof(MissingDependencyFarm.MissingDependencyFarmPlugin), "Missing Dependency Farm")]

namespace MissingDependencyFarm;

/// <summary>Uses a helper library in its constructor.</summary>
public sealed class MissingDependencyFarmPlugin : InMemoryFarm
{
    public MissingDependencyFarmPlugin() => Greeting = FarmHelpers.Greeting.For("Missing Dependency Farm");

    public string Greeting { get; }
}

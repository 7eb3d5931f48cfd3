using FarmApi;
using FarmPlugins.Fixtures;

[assembly: FarmPlugin(typeof(MisregisteredFarm.AbstractFarmPlugin), "Abstract Farm")]
[assembly: FarmPlugin(typeof(MisregisteredFarm.NotAFarmPlugin), "Not A Farm")]

namespace MisregisteredFarm;

/// <summary>A base class registered by mistake: it cannot be constructed.</summary>
public abstract class AbstractFarmPlugin : InMemoryFarm
{
}

/// <summary>Registered, but not a farm plug-in at all.</summary>
public sealed class NotAFarmPlugin
{
}

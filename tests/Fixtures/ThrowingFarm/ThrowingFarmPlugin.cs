using FarmApi;
using FarmPlugins.Fixtures;

[assembly: FarmPlugin(typeof(ThrowingFarm.ThrowingFarmPlugin), "Throwing Farm")]

namespace ThrowingFarm;

/// <summary>Fails in its constructor, as an adapter that checks its licence too early would.</summary>
public sealed class ThrowingFarmPlugin : InMemoryFarm
{
    public ThrowingFarmPlugin() => throw new InvalidOperationException("no licence server configured for Throwing Farm");
}

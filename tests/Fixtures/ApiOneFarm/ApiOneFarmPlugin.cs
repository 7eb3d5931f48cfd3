using FarmApi;
using FarmPlugins.Fixtures;

[assembly: FarmPlugin(typeof(ApiOneFarm.ApiOneFarmPlugin), "Api One Farm", ApiVersion = "1.0")]

namespace ApiOneFarm;

/// <summary>Written for the first plug-in API.</summary>
public sealed class ApiOneFarmPlugin : InMemoryFarm
{
}

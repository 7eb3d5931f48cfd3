using FarmApi;
using FarmPlugins.Fixtures;
using Newtonsoft.Json;

[assembly: FarmPlugin(typeof(BundledJsonFarm.BundledJsonFarmPlugin), "Bundled Json Farm")]

namespace BundledJsonFarm;

/// <summary>Serializes every request with its own Json.NET and says which copy it used.</summary>
public sealed class BundledJsonFarmPlugin : InMemoryFarm
{
    protected override IReadOnlyDictionary<string, string> DescribeJob(JobRequest request) => new Dictionary<string, string>
    {
        ["JsonNetVersion"] = typeof(JsonConvert).Assembly.GetName().Version!.ToString(),
        ["JsonNetPath"] = typeof(JsonConvert).Assembly.Location,
        ["RequestJson"] = JsonConvert.SerializeObject(new { request.Name, Tasks = request.Tasks.Select(t => t.Id).ToArray() }),
    };
}
